"""Image + label-map datasets with one-hot output (S-FLCKR, ADE20K, COCO-Stuff share this).

A label PNG holds one class index per pixel (mode L). `shift_segmentation` adds 1 in uint8, so the
"unlabeled" value 255 wraps to 0 and classes 0..254 become 1..255 (COCO-Stuff stores unlabeled as
255). The label map is resized with NEAREST and cropped with the image's window.

Example: {"image": (H, W, 3) float32 in [-1, 1], "segmentation": (H, W, n_labels) float32 one-hot,
          "file_path_", "relative_file_path_", "segmentation_path_"}.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .base import PairedFiles, read_list_file
from .errors import DataError
from .imageio import read_labels
from .transforms import PairedTransform


def one_hot(labels: np.ndarray, n_labels: int, where: str = "") -> np.ndarray:
    """(H, W) integer labels -> (H, W, n_labels) float32; `DataError` if a label is out of range."""
    top = int(labels.max()) if labels.size else 0
    if top >= n_labels:
        raise DataError(f"label value {top} >= n_labels={n_labels} in {where or 'a label map'}; "
                        f"set n_labels or shift_segmentation to match the data")
    return np.eye(n_labels, dtype=np.float32)[labels]


class SegmentationPairs(PairedFiles):
    """Images and label maps given as aligned path lists (the engine under every segmentation dataset)."""

    map_key = "segmentation"

    def __init__(self, image_paths: Sequence[str], segmentation_paths: Sequence[str], size: int | None = None,
                 random_crop: bool = False, interpolation: str = "bicubic", n_labels: int = 182,
                 shift_segmentation: bool = False, crop_size: int | None = None, random_flip: bool = False,
                 extra: dict | None = None, name: str = "SegmentationPairs", where: str = "?"):
        self.n_labels = n_labels
        self.shift_segmentation = shift_segmentation
        transform = PairedTransform(size=size, crop_size=crop_size, random_crop=random_crop,
                                    random_flip=random_flip, interpolation=interpolation)
        super().__init__(image_paths, segmentation_paths, transform, labels=extra, name=name, where=where)

    def read_map(self, path: str) -> np.ndarray:
        labels = read_labels(path)  # (H, W) uint8
        return labels + np.uint8(1) if self.shift_segmentation else labels  # uint8: unlabeled 255 wraps to 0

    def finish(self, value: np.ndarray, where: str) -> np.ndarray:
        return one_hot(value, self.n_labels, where)


class SegmentationBase(SegmentationPairs):
    """The original's constructor: a csv/txt of relative image paths (`.jpg`), images under
    `data_root`, label maps under `segmentation_root` with the same relative path and `.png`."""

    def __init__(self, data_csv: str, data_root: str, segmentation_root: str, size: int | None = None,
                 random_crop: bool = False, interpolation: str = "bicubic", n_labels: int = 182,
                 shift_segmentation: bool = False, crop_size: int | None = None, random_flip: bool = False,
                 name: str | None = None):
        relpaths = read_list_file(data_csv, "segmentation example list")
        name = name or type(self).__name__
        super().__init__(
            image_paths=[os.path.join(data_root, p) for p in relpaths],
            segmentation_paths=[os.path.join(segmentation_root, os.path.splitext(p)[0] + ".png") for p in relpaths],
            size=None if size is not None and size <= 0 else size, random_crop=random_crop,
            interpolation=interpolation, n_labels=n_labels, shift_segmentation=shift_segmentation,
            crop_size=crop_size, random_flip=random_flip, extra={"relative_file_path_": relpaths}, name=name,
            where=f"{data_csv} (images under {data_root}, label maps under {segmentation_root})")
