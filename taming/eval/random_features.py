"""A sample-quality score that needs no downloaded weights: Fréchet distance in the feature space of
a fixed, seeded RANDOM convolutional network ("FD-randconv").

This is not FID: the Inception weights FID needs are not on a fresh machine. Random convolutional
features still separate image statistics (colour, texture, edges at a few scales), so the number
ranks sample sets; it is only comparable between runs of this function (same seed, same sizes).
Report it beside the same distance between two sets of real images, its floor at that set size.
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
