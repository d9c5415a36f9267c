"""Map agreement: how well an image follows the segmentation map it was drawn for.

Per-class colour statistics come from real images and their maps: the mean RGB colour of every class.
A pixel agrees with its map when its colour is nearest (Euclidean, in RGB) the mean colour of the class
the map has there. The score of an image is the fraction of agreeing pixels; the real images' own score
is the ceiling a generator can be compared with (classes such as sky, water and snow share colours,
so it is well below 1).
"""
from __future__ import annotations

import torch


class ColourStatistics:
    """Mean colour (n_classes, 3) of each class over a set of real images and their maps."""

    def __init__(self, means: torch.Tensor, present: torch.Tensor):
        self.means = means  # (K, 3) in the images' range
        self.present = present  # (K,) bool: classes seen at least once; the others never win

    @classmethod
    def fit(cls, images: torch.Tensor, labels: torch.Tensor, n_classes: int) -> "ColourStatistics":
        """images (B, 3, H, W), labels (B, H, W) class indices (or (B, K, H, W) one-hot)."""
        labels = _as_indices(labels)
        pixels = images.permute(0, 2, 3, 1).reshape(-1, 3).double()  # (N, 3)
        flat = labels.reshape(-1)
        counts = torch.bincount(flat, minlength=n_classes).double()  # (K,)
        sums = torch.zeros(n_classes, 3, dtype=torch.float64).index_add_(0, flat, pixels)
        present = counts > 0
        means = sums / counts.clamp(min=1)[:, None]
        return cls(means.float(), present)

    def nearest_class(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, H, W): the class whose mean colour is nearest each pixel."""
        pixels = images.permute(0, 2, 3, 1).float()  # (B, H, W, 3)
        d = (pixels[..., None, :] - self.means).pow(2).sum(-1)  # (B, H, W, K)
        d[..., ~self.present] = float("inf")
        return d.argmin(-1)


def _as_indices(labels: torch.Tensor) -> torch.Tensor:
    return (labels.argmax(1) if labels.dim() == 4 else labels).long()


def map_agreement(stats: ColourStatistics, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of pixels (B,) whose nearest class colour is the map's class there."""
    labels = _as_indices(labels)
    if images.shape[0] != labels.shape[0] or images.shape[-2:] != labels.shape[-2:]:
        raise ValueError(f"images {tuple(images.shape)} and maps {tuple(labels.shape)} do not match")
    return (stats.nearest_class(images) == labels.to(images.device)).float().flatten(1).mean(1)
