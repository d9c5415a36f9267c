"""Original import path of the Open Images scene-layout dataset (not supported, see annotated_objects.py)."""
from .annotated_objects import AnnotatedObjectsUnsupported


class AnnotatedObjectsOpenImages(AnnotatedObjectsUnsupported):
    name = "Open Images objects with bounding boxes"
