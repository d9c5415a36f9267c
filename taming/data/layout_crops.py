"""The crops of the scene-layout datasets, returning where the crop lies in the original image
(the layout tokens need it) and reproducing the original's pixel arithmetic, since the crop tokens
depend on it:

    none       resize to size x size (the crop is the whole image)
    center     resize the smaller side to size (longer side truncated, as torchvision), centre square
    random-1d  the same resize, a uniformly placed square
    random-2d  a random square of side in [size, smaller side] of the original, then resize to size
A plan is computed from the image's size alone, so layouts can be built without decoding pixels.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import DataError
from .helper_types import BoundingBox
from .transforms import resize_array

CROP_METHODS = ("none", "center", "random-1d", "random-2d")


@dataclass(frozen=True)
class CropPlan:
    box: Optional[BoundingBox]                       # the crop relative to the original image; None: all of it
    resize_first: Optional[tuple[int, int]]          # (W, H) before cropping
    window: Optional[tuple[int, int, int, int]]      # (left, top, w, h) in pixels of the (resized) image
    resize_last: Optional[tuple[int, int]] = None    # (W, H) after cropping


def smaller_side_to(width: int, height: int, size: int) -> tuple[int, int]:
    """(W, H) with the smaller side `size`; the longer one truncated, as torchvision's Resize(int)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def plan_crop(width: int, height: int, size: int, method: str, rng: Optional[random.Random] = None) -> CropPlan:
    rng = rng or random
    if method == "none":
        return CropPlan(None, (size, size), None)
    if method == "random-2d":
        side = min(width, height)
        side = side if side <= size else rng.randint(size, side)
        top, left = rng.randint(0, height - side), rng.randint(0, width - side)
        box = (left / width, top / height, side / width, side / height)
        return CropPlan(box, None, (left, top, side, side), (size, size))
    if method not in ("center", "random-1d"):
        raise DataError(f"crop_method {method!r} unknown; use one of {', '.join(CROP_METHODS)}")
    w, h = smaller_side_to(width, height, size)
    if method == "center":
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
        # the original's relative box: the square's share of the longer side, centred
        box = (0.5 - h / w / 2, 0.0, h / w, 1.0) if w > h else (0.0, 0.5 - w / h / 2, 1.0, w / h)
    else:
        top, left = rng.randint(0, h - size), rng.randint(0, w - size)
        box = (left / w, top / h, size / w, size / h)
    return CropPlan(box, (w, h), (left, top, size, size))


def apply_crop(image: np.ndarray, plan: CropPlan) -> np.ndarray:
    """(H, W, 3) uint8 -> the planned crop, bilinear resizing (torchvision's default)."""
    if plan.resize_first is not None:
        image = resize_array(image, plan.resize_first[::-1], "bilinear")
    if plan.window is not None:
        left, top, w, h = plan.window
        image = image[top:top + h, left:left + w]
    if plan.resize_last is not None:
        image = resize_array(image, plan.resize_last[::-1], "bilinear")
    return image
