"""Geometry of relative boxes (x0, y0, w, h), all in [0, 1] of the image they belong to."""
from __future__ import annotations

from typing import Sequence

from ..helper_types import Annotation, BoundingBox

FULL_CROP: BoundingBox = (0.0, 0.0, 1.0, 1.0)


def corners(box: BoundingBox) -> tuple[float, float, float, float]:
    """(x0, y0, w, h) -> (x0, y0, x1, y1)."""
    return box[0], box[1], box[0] + box[2], box[1] + box[3]


def intersection_area(a: BoundingBox, b: BoundingBox) -> float:
    ax0, ay0, ax1, ay1 = corners(a)
    bx0, by0, bx1, by1 = corners(b)
    return max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))


def flip_horizontally(box: BoundingBox) -> BoundingBox:
    return 1 - (box[0] + box[2]), box[1], box[2], box[3]


def to_pixels(box: BoundingBox, width: int, height: int) -> tuple[int, int, int, int]:
    """Relative (x0, y0, w, h) -> integer pixel corners (x0, y0, x1, y1), truncated."""
    x0, y0, x1, y1 = corners(box)
    return int(x0 * width), int(y0 * height), int(x1 * width), int(y1 * height)


def _clamp(value: float) -> float:
    return max(min(value, 1.0), 0.0)


def into_crop(box: BoundingBox, crop: BoundingBox, flip: bool) -> BoundingBox:
    """A box of the image -> the same box relative to `crop`: the top-left corner clamped into the
    crop, width and height cut at its right and bottom edges (the original's order, which the
    tokens depend on), then mirrored if the crop is flipped."""
    x0 = _clamp((box[0] - crop[0]) / crop[2])
    y0 = _clamp((box[1] - crop[1]) / crop[3])
    w = min(box[2] / crop[2], 1 - x0)
    h = min(box[3] / crop[3], 1 - y0)
    if flip:
        x0 = 1 - (x0 + w)
    return x0, y0, w, h


def objects_in_crop(annotations: Sequence[Annotation], crop: BoundingBox) -> list[Annotation]:
    """Objects that overlap the crop by a positive area."""
    return [a for a in annotations if intersection_area(a.bbox, crop) > 0.0]


def rescale(annotations: Sequence[Annotation], crop: BoundingBox, flip: bool) -> list[Annotation]:
    return [a._replace(bbox=into_crop(a.bbox, crop, flip)) for a in annotations]
