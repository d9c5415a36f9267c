"""Original import path `taming.modules.util`: SOSProvider and Labelator live in
taming/transformer/cond_stages.py, ActNorm in taming/losses/discriminator.py."""
from __future__ import annotations

from torch import nn

from taming.losses.discriminator import ActNorm
from taming.transformer.cond_stages import Labelator, SOSProvider


def count_params(model: nn.Module, verbose: bool = False) -> int:
    total = sum(p.numel() for p in model.parameters())
    if verbose:
        print(f"{type(model).__name__} has {total * 1.e-6:.2f} M params.")
    return total


__all__ = ["SOSProvider", "ActNorm", "Labelator", "count_params"]
