"""Extra conditioning signals: coordinates (faceshq_transformer.yaml's CoordStage) and low-resolution
copies for super-resolution."""
from __future__ import annotations

from typing import Mapping

import numpy as np
from torch.utils.data import Dataset

from ..config import instantiate_from_config
from .errors import DataError
from .transforms import get_filter, resize_array


def coord_map(h: int, w: int) -> np.ndarray:
    """(H, W, 1) float32: the raster position of each pixel / (H*W), in [0, 1), as the original.

    Computed on the full image before cropping, so a crop keeps its absolute position (CoordStage
    quantizes these values to n_embed levels)."""
    return (np.arange(h * w, dtype=np.float64).reshape(h, w, 1) / (h * w)).astype(np.float32)


def low_resolution(image: np.ndarray, factor: int, interpolation: str = "bicubic") -> np.ndarray:
    """(H, W, C) float image in [-1, 1] -> (H/f, W/f, C), downscaled with `interpolation` (PIL)."""
    h, w = image.shape[:2]
    if factor < 1 or h % factor or w % factor:
        raise DataError(f"downscale factor {factor} must be >= 1 and divide the image size {h}x{w}")
    get_filter(interpolation)
    small = resize_array(image.astype(np.float32), (h // factor, w // factor), interpolation)
    return np.clip(small, -1.0, 1.0).astype(np.float32)


def _build(dataset, where: str):
    """A dataset, or a {target, params} node (from a config) that builds one."""
    if isinstance(dataset, Mapping):
        return instantiate_from_config(dataset, where=where)
    return dataset


class WithLowResolution(Dataset):
    """Adds "LR_image" (the example's image downscaled by `downscale_f`) to any image dataset,
    for super-resolution conditioning. Wrap in a config as
    {target: taming.data.coord.WithLowResolution, params: {dataset: {target: ..., params: ...}, downscale_f: 4}}.
    """

    def __init__(self, dataset, downscale_f: int = 4, degradation: str = "bicubic"):
        self.dataset = _build(dataset, "WithLowResolution.dataset")
        self.factor, self.degradation = int(downscale_f), degradation
        get_filter(degradation)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        example = dict(self.dataset[i])
        example["LR_image"] = low_resolution(np.asarray(example["image"]), self.factor, self.degradation)
        return example


class WithCoord(Dataset):
    """Adds "coord" (see `coord_map`) of the example's (already cropped) image to any dataset."""

    def __init__(self, dataset):
        self.dataset = _build(dataset, "WithCoord.dataset")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        example = dict(self.dataset[i])
        h, w = np.asarray(example["image"]).shape[:2]
        example["coord"] = coord_map(h, w)
        return example
