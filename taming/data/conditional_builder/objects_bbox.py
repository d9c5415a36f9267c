"""Objects as (class, top-left, bottom-right) token triples; otherwise as objects_center_points
(same grid, flags, padding and crop tokens)."""
from __future__ import annotations

from typing import ClassVar, Optional

import torch

from ..helper_types import Annotation, BoundingBox
from .objects_center_points import ObjectsCenterPointsConditionalBuilder


class ObjectsBoundingBoxConditionalBuilder(ObjectsCenterPointsConditionalBuilder):
    object_descriptor_length: ClassVar[int] = 3

    def _object_tokens(self, annotation: Annotation) -> tuple[int, ...]:
        return (self.object_representation(annotation), *self.token_pair_from_bbox(annotation.bbox))

    def inverse_build(self, conditional: torch.Tensor) -> tuple[list[tuple[int, BoundingBox]], Optional[BoundingBox]]:
        """Tokens -> ([(representation, (x0, y0, w, h))], crop box or None)."""
        objects, crop = self._split(conditional)
        return [(rep, self.bbox_from_token_pair(a, b)) for rep, a, b in objects], crop
