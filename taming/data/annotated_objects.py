"""Scene-layout datasets (objects + bounding boxes as conditioning tokens) of the original's
coco_scene_images_transformer.yaml and open_images_scene_images_transformer.yaml.

Not re-implemented: they need the original's object-annotation preprocessing and its conditional
token builder. The classes exist so those configs resolve and validate, and stop with one clear
message instead of an import error.
"""
from __future__ import annotations

from torch.utils.data import Dataset

from .errors import DataError


class AnnotatedObjectsUnsupported(Dataset):
    name = "annotated objects"

    def __init__(self, data_path: str = "", split: str = "train", **params):
        raise DataError(
            f"{type(self).__name__} ({self.name}, data_path={data_path!r}, split={split!r}) is not supported by "
            f"this re-implementation: scene-layout conditioning (objects_bbox tokens) is out of scope. "
            f"Supported datasets: taming.data.custom, faceshq, imagenet, sflckr, ade20k, coco "
            f"(CocoImagesAndCaptions*), drin, landscapes, webdataset.")
