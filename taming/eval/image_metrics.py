"""Per-image PSNR and SSIM of images in [-1, 1], computed on the given data range.

SSIM is Wang et al. 2004 as skimage (`gaussian_weights=True, sigma=1.5, use_sample_covariance=False`)
and torchmetrics compute it: an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, local means,
variances and covariance from that window, the SSIM map averaged over the valid region (the window fully
inside the image: skimage crops (11-1)/2 = 5 pixels from each border) and over channels.
(torchmetrics >= 1.0 averages its map over the whole image, borders computed on a reflect-padded copy,
which gives slightly different numbers; we keep skimage's valid region, the published definition.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two image batches (B, C, H, W) of the same shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """PSNR in dB per image (B,): 10 log10(range^2 / MSE); identical images give +inf."""
    _check(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)  # (B,)
    return (10 * torch.log10(data_range ** 2 / mse)).float()


def _gaussian_window(channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Depthwise (C, 1, 11, 11) normalised Gaussian kernel."""
    r = torch.arange(WINDOW, dtype=dtype, device=device) - (WINDOW - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * SIGMA ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, WINDOW, WINDOW).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Mean SSIM per image (B,), over channels and the valid (uncropped-window) region."""
    _check(x, y)
    if min(x.shape[-2:]) < WINDOW:
        raise ValueError(f"SSIM needs images of at least {WINDOW}x{WINDOW} pixels, got {tuple(x.shape[-2:])}")
    x, y = x.double(), y.double()
    c = x.shape[1]
    w = _gaussian_window(c, x.dtype, x.device)
    # one depthwise conv over the five local moments: (5B, C, H', W')
    stack = torch.cat([x, y, x * x, y * y, x * y])
    mu_x, mu_y, xx, yy, xy = F.conv2d(stack, w, groups=c).chunk(5)
    var_x, var_y, cov = xx - mu_x ** 2, yy - mu_y ** 2, xy - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return smap.flatten(1).mean(1).float()  # (B,)
