"""Optimizers with PyTorch's fused kernels where they exist.

A fused Adam/AdamW updates every parameter in one kernel per dtype and device instead of a dozen
elementwise passes over all weights (on CPU too, since torch 2.4): the same update, less memory
traffic. Builds or devices without it fall back to the default implementation.
"""
from __future__ import annotations

import inspect
from typing import Any, Iterable

import torch


def fused(cls: type[torch.optim.Optimizer], params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
    """cls(params, fused=True, **kwargs), or cls(params, **kwargs) where fusing is not available."""
    params = list(params)
    if "fused" in inspect.signature(cls).parameters:
        try:
            return cls(params, fused=True, **kwargs)
        except RuntimeError:  # fused not implemented for this device or dtype
            pass
    return cls(params, **kwargs)


def count_params(model: torch.nn.Module, verbose: bool = False) -> int:
    """The original `taming.modules.util.count_params`: number of parameters, printed in millions if verbose."""
    total = sum(p.numel() for p in model.parameters())
    if verbose:
        print(f"{type(model).__name__} has {total * 1.e-6:.2f} M params.")
    return total
