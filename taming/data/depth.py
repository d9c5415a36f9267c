"""Image + depth pairs (ImageNet depth, D-RIN): depth read as in the original, normalized per image.

Depth files are PNGs whose RGBA bytes hold one little-endian float32 per pixel (MiDaS output packed
by the original); `taming.data.imageio.read_depth` decodes them. Each map is normalized to [-1, 1]
by its own min and max, as the original, then resized (bilinear) and cropped with the image.
Example: {"image": (H, W, 3) float32 in [-1, 1], "depth": (H, W, 1) float32 in [-1, 1], "file_path_",
"depth_path_", **labels}. (The original returned depth as (H, W); the models' get_input adds the
channel axis either way.)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import PairedFiles
from .imageio import normalize_depth, read_depth
from .transforms import PairedTransform


class ImageDepthPairs(PairedFiles):
    """Aligned lists of image and depth files.

    size: smaller side after resizing; crop: `size` (or `crop_size` when no size), random for
    training with a random flip (as the original's depth datasets), centre otherwise."""

    map_key = "depth"

    def __init__(self, image_paths: Sequence[str], depth_paths: Sequence[str], size: int | None = None,
                 random_crop: bool = False, crop_size: int | None = None, labels: dict | None = None,
                 interpolation: str = "bicubic", name: str = "ImageDepthPairs", where: str = "?"):
        size = None if size is not None and size <= 0 else size
        transform = PairedTransform(size=size, crop_size=size or crop_size, random_crop=random_crop,
                                    random_flip=random_crop, interpolation=interpolation)
        super().__init__(image_paths, depth_paths, transform, labels=labels, name=name, where=where)

    def read_map(self, path: str) -> np.ndarray:
        return normalize_depth(read_depth(path))[..., None]  # (H, W, 1) in [-1, 1], per-image min-max

    def finish(self, value: np.ndarray, where: str) -> np.ndarray:
        return np.clip(value, -1.0, 1.0).astype(np.float32)
