"""Compatibility face of the original `taming.modules.util`.

SOSProvider lives here: the "cond stage" of unconditional transformers, which ignores its input
and gives every image the same single start-of-sequence token. ActNorm (taming.losses) and
Labelator (taming.transformer.cond_stages) are re-exported under their original path; Labelator
is resolved on first access because cond_stages itself imports SOSProvider from here.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from taming.losses.discriminator import ActNorm


class SOSProvider(nn.Module):
    def __init__(self, sos_token: int, quantize_interface: bool = True):
        super().__init__()
        self.sos_token = sos_token
        self.quantize_interface = quantize_interface

    def encode(self, x: torch.Tensor):
        """x (B, ...) -> c (B, 1) long filled with sos_token; as a quantizer's (c, None, [None, None, c])."""
        c = torch.full((x.shape[0], 1), int(self.sos_token), dtype=torch.long, device=x.device)
        if self.quantize_interface:
            return c, None, [None, None, c]
        return c


def count_params(model: nn.Module, verbose: bool = False) -> int:
    total = sum(p.numel() for p in model.parameters())
    if verbose:
        print(f"{type(model).__name__} has {total * 1.e-6:.2f} M params.")
    return total


def __getattr__(name: str) -> Any:
    if name == "Labelator":
        from taming.transformer.cond_stages import Labelator

        return Labelator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SOSProvider", "ActNorm", "Labelator", "count_params"]
