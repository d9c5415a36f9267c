"""Records of the scene-layout datasets (the original's names and fields, so pickled examples and
code that reads `annotation.bbox` keep working).

Boxes are relative to the image: (x0, y0, w, h) with x0, y0, w, h in [0, 1].
"""
from __future__ import annotations

from typing import Literal, NamedTuple, Optional

BoundingBox = tuple[float, float, float, float]  # (x0, y0, w, h), relative
CropMethodType = Literal["none", "center", "random-1d", "random-2d"]
SplitType = Literal["train", "validation", "test"]


class Category(NamedTuple):
    id: str
    super_category: Optional[str]
    name: str


class Annotation(NamedTuple):
    """One object of an image. `category_no` is the dense class number the tokens use."""
    area: float
    image_id: str
    bbox: BoundingBox
    category_no: int
    category_id: str
    id: Optional[int] = None
    source: Optional[str] = None
    confidence: Optional[float] = None
    is_group_of: Optional[bool] = None
    is_truncated: Optional[bool] = None
    is_occluded: Optional[bool] = None
    is_depiction: Optional[bool] = None
    is_inside: Optional[bool] = None


class Annotations(list):
    """An example's objects. A list type of its own so batching keeps one list per example
    (images hold different numbers of objects; see taming/data/collate.py)."""


__all__ = ["BoundingBox", "CropMethodType", "SplitType", "Category", "Annotation", "Annotations"]
