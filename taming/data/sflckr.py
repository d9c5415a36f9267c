"""S-FLCKR landscapes with COCO-Stuff segmentations (182 classes, no shift), as the original.

Layout (../shared/data/sflckr holds 25 examples in it):
    <root>/examples.txt               relative paths, e.g. canada/256743165_9f130ba95b_b.jpg
    <root>/images/<group>/<name>.jpg
    <root>/segmentations/<group>/<name>.png   mode L, class index per pixel
`Examples(size=256)` reads the original default locations (data/sflckr_examples.txt,
data/sflckr_images, data/sflckr_segmentations); pass `root` for the layout above.
"""
from __future__ import annotations

import os

from .segmentation import SegmentationBase

DEFAULT_CSV = "data/sflckr_examples.txt"
DEFAULT_IMAGES = "data/sflckr_images"
DEFAULT_SEGMENTATIONS = "data/sflckr_segmentations"


class Examples(SegmentationBase):
    def __init__(self, size: int | None = None, random_crop: bool = False, interpolation: str = "bicubic",
                 root: str | None = None, data_csv: str | None = None, crop_size: int | None = None,
                 random_flip: bool = False):
        super().__init__(
            data_csv=data_csv or (os.path.join(root, "examples.txt") if root else DEFAULT_CSV),
            data_root=os.path.join(root, "images") if root else DEFAULT_IMAGES,
            segmentation_root=os.path.join(root, "segmentations") if root else DEFAULT_SEGMENTATIONS,
            size=size, random_crop=random_crop, interpolation=interpolation, n_labels=182,
            shift_segmentation=False, crop_size=crop_size, random_flip=random_flip, name="sflckr.Examples")
