"""Object layouts as conditioning tokens (the original's `taming.data.conditional_builder`).

    objects_center_points  2 tokens per object: class (+ flags), the box centre on the token grid
    objects_bbox           3 tokens per object: class (+ flags), top-left and bottom-right corners
    boxes                  box geometry: crop intersection, rescaling into a crop, flips
    plot                   a layout drawn as an image (bundled DejaVu font, found through matplotlib)
"""
from .objects_bbox import ObjectsBoundingBoxConditionalBuilder
from .objects_center_points import ObjectsCenterPointsConditionalBuilder

BUILDERS = {
    "objects_center_points": ObjectsCenterPointsConditionalBuilder,
    "objects_bbox": ObjectsBoundingBoxConditionalBuilder,
}

__all__ = ["ObjectsCenterPointsConditionalBuilder", "ObjectsBoundingBoxConditionalBuilder", "BUILDERS"]
