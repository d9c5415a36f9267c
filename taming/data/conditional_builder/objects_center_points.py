"""Objects as (class, centre) token pairs, padded to a fixed length, plus the crop as two tokens.

Token layout of one example (length `embedding_dim`):

    [rep_1, c_1, rep_2, c_2, ..., rep_N, c_N, none, none, ..., crop_tl, crop_br]
     \\___ no_max_objects pairs, unused ones are (none, none) ___/  \\_ if encode_crop _/

- a coordinate (x, y) in [0, 1]^2 is one token on a `no_sections` x `no_sections` grid
  (no_sections = floor(sqrt(no_tokens))): round(y * (n - 1)) * n + round(x * (n - 1));
- rep = category_no + no_object_classes * flags, flags a bit set: 1 group (use_group_parameter),
  2 occluded, 4 depiction, 8 inside (use_additional_parameters);
- none = no_tokens - 1 pads the unused object slots;
- with encode_crop the boxes stay in whole-image coordinates and the crop's two corners are
  appended; without it the boxes are rescaled into the crop. A horizontal flip mirrors both.
Objects are shuffled before tokenizing (the original does, so the model sees no fixed order).
"""
from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass
from typing import Callable, ClassVar, Optional, Sequence

import torch

from ..helper_types import Annotation, BoundingBox
from . import boxes
from .boxes import FULL_CROP

FLAG_BITS = (("is_group_of", 1), ("is_occluded", 2), ("is_depiction", 4), ("is_inside", 8))


@dataclass
class ObjectsCenterPointsConditionalBuilder:
    no_object_classes: int
    no_max_objects: int
    no_tokens: int
    encode_crop: bool
    use_group_parameter: bool
    use_additional_parameters: bool

    object_descriptor_length: ClassVar[int] = 2

    def __post_init__(self) -> None:
        flags = 16 if self.use_additional_parameters else 2 if self.use_group_parameter else 1
        if self.no_object_classes * flags > self.no_tokens - 1:
            raise ValueError(f"{type(self).__name__}: {self.no_object_classes} classes x {flags} flag combinations "
                             f"do not fit below the padding token {self.no_tokens - 1}; raise no_tokens")

    @property
    def none(self) -> int:
        """The padding token of unused object slots."""
        return self.no_tokens - 1

    @property
    def no_sections(self) -> int:
        return math.isqrt(self.no_tokens)

    @property
    def embedding_dim(self) -> int:
        return self.no_max_objects * self.object_descriptor_length + (2 if self.encode_crop else 0)

    # ---- coordinates <-> tokens -------------------------------------------------------------
    def tokenize_coordinates(self, x: float, y: float) -> int:
        n = self.no_sections
        return int(round(y * (n - 1))) * n + int(round(x * (n - 1)))

    def coordinates_from_token(self, token: int) -> tuple[float, float]:
        n = self.no_sections
        return (token % n) / (n - 1), (token // n) / (n - 1)

    def token_pair_from_bbox(self, bbox: BoundingBox) -> tuple[int, int]:
        x0, y0, x1, y1 = boxes.corners(bbox)
        return self.tokenize_coordinates(x0, y0), self.tokenize_coordinates(x1, y1)

    def bbox_from_token_pair(self, token1: int, token2: int) -> BoundingBox:
        x0, y0 = self.coordinates_from_token(token1)
        x1, y1 = self.coordinates_from_token(token2)
        return x0, y0, x1 - x0, y1 - y0

    # ---- class + flags <-> one token --------------------------------------------------------
    def object_representation(self, annotation: Annotation) -> int:
        flags = 0
        for name, bit in FLAG_BITS:
            used = self.use_group_parameter if bit == 1 else self.use_additional_parameters
            if used and getattr(annotation, name) is True:
                flags |= bit
        return annotation.category_no + self.no_object_classes * flags

    def representation_to_annotation(self, representation: int) -> Annotation:
        """A token -> an Annotation with only category_no and the flags filled in."""
        flags = representation // self.no_object_classes
        values = {name: bool(flags & bit) and (self.use_group_parameter if bit == 1 else self.use_additional_parameters)
                  for name, bit in FLAG_BITS}
        return Annotation(area=None, image_id=None, bbox=None, category_id=None,  # type: ignore[arg-type]
                          category_no=representation % self.no_object_classes, **values)

    # ---- building ---------------------------------------------------------------------------
    def _object_tokens(self, annotation: Annotation) -> tuple[int, ...]:
        x0, y0, w, h = annotation.bbox
        return self.object_representation(annotation), self.tokenize_coordinates(x0 + w / 2, y0 + h / 2)

    def build(self, annotations: Sequence[Annotation], crop_coordinates: Optional[BoundingBox] = None,
              horizontal_flip: bool = False, rng: Optional[random.Random] = None) -> torch.Tensor:
        """Objects (boxes relative to the whole image) of a crop -> tokens (embedding_dim,) long."""
        annotations = list(annotations)
        if not annotations:
            warnings.warn("Did not receive any annotations.")
        if len(annotations) > self.no_max_objects:
            warnings.warn(f"Received {len(annotations)} annotations, more than {self.no_max_objects}; "
                          "the rest are dropped.")
            annotations = annotations[:self.no_max_objects]
        crop = tuple(crop_coordinates) if crop_coordinates else FULL_CROP
        (rng or random).shuffle(annotations)
        annotations = boxes.objects_in_crop(annotations, crop)
        if self.encode_crop:
            annotations = boxes.rescale(annotations, FULL_CROP, horizontal_flip)
            crop = boxes.flip_horizontally(crop) if horizontal_flip else crop
            extra = list(self.token_pair_from_bbox(crop))
        else:
            annotations = boxes.rescale(annotations, crop, horizontal_flip)
            extra = []
        tokens = [t for a in annotations for t in self._object_tokens(a)]
        tokens += [self.none] * (self.embedding_dim - len(extra) - len(tokens)) + extra
        bad = [t for t in tokens if not 0 <= t < self.no_tokens]
        if bad:
            raise ValueError(f"{type(self).__name__}: tokens {bad[:5]} outside [0, {self.no_tokens}); "
                             "category_no must be below no_object_classes")
        return torch.tensor(tokens, dtype=torch.long)

    # ---- reading tokens back ----------------------------------------------------------------
    def _split(self, conditional: torch.Tensor) -> tuple[list[list[int]], Optional[BoundingBox]]:
        """Tokens (embedding_dim,) -> the used object descriptors and the crop box (None without encode_crop)."""
        values = [int(v) for v in conditional.reshape(-1).tolist()]
        if len(values) != self.embedding_dim:
            raise ValueError(f"{type(self).__name__}: expected {self.embedding_dim} tokens, got {len(values)}")
        crop = None
        if self.encode_crop:
            crop = self.bbox_from_token_pair(values[-2], values[-1])
            values = values[:-2]
        n = self.object_descriptor_length
        groups = [values[i:i + n] for i in range(0, len(values), n)]
        return [g for g in groups if g[0] != self.none], crop

    def inverse_build(self, conditional: torch.Tensor) -> tuple[list[tuple[int, tuple[float, float]]],
                                                                 Optional[BoundingBox]]:
        """Tokens -> ([(representation, (x, y) centre)], crop box or None)."""
        objects, crop = self._split(conditional)
        return [(rep, self.coordinates_from_token(c)) for rep, c in objects], crop

    def plot(self, conditional: torch.Tensor, label_for_category_no: Callable[[int], str],
             figure_size: tuple[int, int], line_width: int = 3, font_size: Optional[int] = None) -> torch.Tensor:
        """The layout drawn on white -> (3, H, W) float in [-1, 1]; figure_size is (W, H)."""
        from .plot import draw_layout

        return draw_layout(self, conditional, label_for_category_no, figure_size, line_width, font_size)
