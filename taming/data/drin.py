"""D-RIN: ImageNet photos with MiDaS depth, in the folder layout of ../shared/data/drin:

    <root>/examples.txt                       relative paths, e.g. n02100877/ILSVRC2012_val_00039863.JPEG
    <root>/images/<wnid>/<name>.JPEG
    <root>/depth/<wnid>/<name>.png            float32 packed into RGBA (see taming.data.depth)

`DRINExamples(size=256, root=...)`: centre crop; `random_crop=True` for training (with a flip).
Keys: image, depth (H, W, 1) in [-1, 1], class_label (index of the wnid among the listed ones,
sorted), synsets, relpath, file_path_, depth_path_. The config targets
taming.data.imagenet.RINTrainWithDepth / RINValidationWithDepth read the full ImageNet layout instead.
"""
from __future__ import annotations

import os

from .base import read_list_file
from .depth import ImageDepthPairs
from .imagenet import class_labels


class DRINExamples(ImageDepthPairs):
    def __init__(self, size: int | None = 256, root: str = "data/drin", random_crop: bool = False,
                 crop_size: int | None = None, data_csv: str | None = None):
        data_csv = data_csv or os.path.join(root, "examples.txt")
        relpaths = read_list_file(data_csv, "D-RIN example list")
        synsets, labels = class_labels(relpaths)
        super().__init__(
            image_paths=[os.path.join(root, "images", p) for p in relpaths],
            depth_paths=[os.path.join(root, "depth", os.path.splitext(p)[0] + ".png") for p in relpaths],
            size=size, random_crop=random_crop, crop_size=crop_size,
            labels={"relpath": relpaths, "synsets": synsets, "class_label": labels},
            name="DRINExamples", where=f"{data_csv} (images/ and depth/ under {root})")
