"""Original import path of the COCO scene-layout dataset (not supported, see annotated_objects.py)."""
from .annotated_objects import AnnotatedObjectsUnsupported


class AnnotatedObjectsCoco(AnnotatedObjectsUnsupported):
    name = "COCO objects with bounding boxes"
