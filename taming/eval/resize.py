"""Bilinear resize as TensorFlow 1.x computes it (`tf.image.resize_bilinear`, align_corners=False).

The FID Inception graph resizes its input to 299x299 with this rule, and torch-fidelity reproduces it
exactly; F.interpolate does not (it samples at pixel centres, `(dst + 0.5) * scale - 0.5`). TF 1.x maps
output pixel `d` to source coordinate `d * in / out` (no half-pixel offset), takes the two neighbours
`floor(s)` and `min(floor(s) + 1, in - 1)`, and blends along the width first, then the height. The
coordinates are float32 products, as in the reference, so results are bit-identical on CPU.
"""
from __future__ import annotations

import torch


def _taps(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lo, hi, frac) for each of n_out output positions."""
    src = torch.arange(n_out, dtype=torch.float32, device=device) * torch.tensor(n_in / n_out, dtype=torch.float32)
    lo = src.long()  # src >= 0, so truncation is floor
    hi = (lo + 1).clamp_max(n_in - 1)
    return lo, hi, src - lo.float()


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) float -> (B, C, size[0], size[1])."""
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"expected a float (B, C, H, W) tensor, got {x.dtype} {tuple(x.shape)}")
    y_lo, y_hi, dy = _taps(x.shape[2], size[0], x.device)
    x_lo, x_hi, dx = _taps(x.shape[3], size[1], x.device)
    dx, dy = dx.to(x.dtype).view(1, 1, 1, -1), dy.to(x.dtype).view(1, 1, -1, 1)
    top, bottom = x[:, :, y_lo], x[:, :, y_hi]  # (B, C, out_h, W)
    top = top[..., x_lo] + (top[..., x_hi] - top[..., x_lo]) * dx  # (B, C, out_h, out_w)
    bottom = bottom[..., x_lo] + (bottom[..., x_hi] - bottom[..., x_lo]) * dx
    return top + (bottom - top) * dy
