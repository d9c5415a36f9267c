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
            optimizer = cls(params, fused=True, **kwargs)
        except RuntimeError:  # fused not implemented for this device or dtype
            pass
        else:
            optimizer.register_load_state_dict_post_hook(states_like_params)
            return optimizer
    return cls(params, **kwargs)


def states_like_params(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-element state (Adam's moments) its parameter's memory layout.

    The fused kernels walk a parameter's memory and its states' memory in step, whatever their
    strides: a state loaded in another layout than its parameter (a checkpoint of NCHW weights
    resumed with channels_last ones, taming.training.first_stage.channels_last_training) would pair
    the wrong elements without any error (torch 2.13). Values are kept; only the layout changes."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def count_params(model: torch.nn.Module, verbose: bool = False) -> int:
    """The original `taming.modules.util.count_params`: number of parameters, printed in millions if verbose."""
    total = sum(p.numel() for p in model.parameters())
    if verbose:
        print(f"{type(model).__name__} has {total * 1.e-6:.2f} M params.")
    return total
