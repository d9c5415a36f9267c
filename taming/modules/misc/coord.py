"""CoordStage: the "conditioning model" of the faceshq transformer. It has no weights: it area-
downsamples a (B, 1, H, W) coordinate map in [0, 1] by `down_factor` and rounds it onto
`n_embed` integer codes, exposing the VQ model interface (encode/decode) the transformer expects."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CoordStage(nn.Module):
    def __init__(self, n_embed: int, down_factor: int) -> None:
        super().__init__()
        self.n_embed = n_embed
        self.down_factor = down_factor

    def encode(self, c: torch.Tensor):
        """(B, 1, H, W) in [0, 1] -> (quant (B, 1, H/f, W/f) float codes, None, (None, None, long codes))."""
        if c.dim() != 4 or c.shape[1] != 1:
            raise ValueError(f"CoordStage.encode expects (B, 1, H, W) coordinates, got {tuple(c.shape)}")
        if c.min() < 0.0 or c.max() > 1.0:
            raise ValueError(f"CoordStage.encode expects values in [0, 1], got [{c.min():.4g}, {c.max():.4g}]")
        c = F.interpolate(c, scale_factor=1 / self.down_factor, mode="area").clamp(0.0, 1.0)
        c_quant = (self.n_embed * c).round()
        return c_quant, None, (None, None, c_quant.long())

    def decode(self, c: torch.Tensor) -> torch.Tensor:
        """Codes (B, 1, h, w) -> coordinates (B, 1, h*f, w*f), nearest upsampling."""
        return F.interpolate(c / self.n_embed, scale_factor=self.down_factor, mode="nearest")
