"""Sample-quality scores that need no downloaded weights, in the feature space of a fixed, seeded
RANDOM convolutional network:

    KD-randconv   the kernel distance KID computes (unbiased MMD^2, cubic polynomial kernel): well
                  defined for a few dozen images, so it is the demo's score
    FD-randconv   the Fréchet distance FID computes: needs many more images than feature dimensions

These are not KID/FID: the Inception weights those need are not on a fresh machine. Random conv
features still separate image statistics (colour, texture, edges at a few scales), so the numbers
rank sample sets; they are only comparable between runs of these functions (same seed, same sizes).
Report them beside the same distance between two sets of real images, the floor at that set size.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import linalg
from torch import nn

SEED = 0
WIDTHS = (16, 32, 32)  # channels of the three conv layers; features = their global means and stds


class RandomConvFeatures(nn.Module):
    """Images (B, 3, H, W) in [-1, 1] -> (B, 2 * sum(WIDTHS)) features: mean and std of every channel."""

    def __init__(self, seed: int = SEED):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        layers, c = [], 3
        for w in WIDTHS:
            conv = nn.Conv2d(c, w, 3, stride=2, padding=1)
            nn.init.normal_(conv.weight, std=(2.0 / (9 * c)) ** 0.5, generator=g)  # He init: stable scales
            nn.init.zeros_(conv.bias)
            layers.append(conv)
            c = w
        self.layers = nn.ModuleList(layers).requires_grad_(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for conv in self.layers:
            x = torch.relu(conv(x))
            feats += [x.mean((2, 3)), x.std((2, 3))]
        return torch.cat(feats, 1).double()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature rows a (N, D) and b (M, D)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # near-singular product: regularise as pytorch-fid does
        eps = 1e-6 * np.eye(len(s1))
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(covmean)))


def fd_randconv(x: torch.Tensor, y: torch.Tensor, seed: int = SEED) -> float:
    """FD-randconv between image sets x (N, 3, H, W) and y (M, 3, H', W'), both in [-1, 1]."""
    net = RandomConvFeatures(seed)
    return frechet_distance(net(x.float().cpu()).numpy(), net(y.float().cpu()).numpy())


def kernel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 between rows a (N, D) and b (M, D) with KID's kernel (x.y / D + 1)^3."""
    d = a.shape[1]
    kaa, kbb, kab = ((a @ a.T) / d + 1) ** 3, ((b @ b.T) / d + 1) ** 3, ((a @ b.T) / d + 1) ** 3
    n, m = len(a), len(b)
    return float((kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
                 - 2 * kab.mean())


def kd_randconv(x: torch.Tensor, y: torch.Tensor, seed: int = SEED) -> float:
    """KD-randconv between image sets x (N, 3, H, W) and y (M, 3, H', W'), both in [-1, 1]."""
    net = RandomConvFeatures(seed)
    return kernel_distance(net(x.float().cpu()).numpy(), net(y.float().cpu()).numpy())
