"""ADE20K scene parsing (ADEChallengeData2016): 150 classes + "unknown" 0, so n_labels = 151, no shift.

Layout under `root` (default data/ade20k_root, as the original):
    images/training/ADE_train_00000001.jpg      annotations/training/ADE_train_00000001.png
    images/validation/ADE_val_00000001.jpg      annotations/validation/ADE_val_00000001.png
    sceneCategories.txt (optional: "ADE_train_00000001 airport_terminal" per line -> "scene_category")
The example list is `data_csv` (default data/ade20k_train.txt / data/ade20k_test.txt as the original,
lines like training/ADE_train_00000001.jpg); if that file does not exist, every .jpg under
images/training (images/validation) is used. Train: random crop; validation: centre crop.

`Examples(size=256)`: the original's few example pairs, listed in data/ade20k_examples.txt (relative
.jpg paths) with images under data/ade20k_images and label maps (.png) under
data/ade20k_segmentations; pass `root` for <root>/examples.txt, <root>/images, <root>/segmentations.
"""
from __future__ import annotations

import os
from pathlib import Path

from .base import read_list_file
from .errors import DataError
from .segmentation import SegmentationBase, SegmentationPairs

DEFAULT_ROOT = "data/ade20k_root"
DEFAULT_LISTS = {"train": "data/ade20k_train.txt", "validation": "data/ade20k_test.txt"}
SUBFOLDER = {"train": "training", "validation": "validation"}
N_LABELS = 151  # 150 classes and "unknown" 0


class Examples(SegmentationBase):
    def __init__(self, size: int | None = 256, random_crop: bool = False, interpolation: str = "bicubic",
                 root: str | None = None, data_csv: str | None = None):
        super().__init__(
            data_csv=data_csv or (os.path.join(root, "examples.txt") if root else "data/ade20k_examples.txt"),
            data_root=os.path.join(root, "images") if root else "data/ade20k_images",
            segmentation_root=os.path.join(root, "segmentations") if root else "data/ade20k_segmentations",
            size=size, random_crop=random_crop, interpolation=interpolation, n_labels=N_LABELS,
            shift_segmentation=False, name="ade20k.Examples")


class ADE20kBase(SegmentationPairs):
    split = "train"

    def __init__(self, config=None, size: int | None = None, random_crop: bool = False,
                 interpolation: str = "bicubic", crop_size: int | None = None, root: str = DEFAULT_ROOT,
                 data_csv: str | None = None, random_flip: bool = False):
        data_csv = data_csv or DEFAULT_LISTS[self.split]
        if os.path.isfile(data_csv):
            relpaths = read_list_file(data_csv, "ADE20K example list")
            where = f"{data_csv} (under {root})"
        else:
            folder = Path(root) / "images" / SUBFOLDER[self.split]
            if not folder.is_dir():
                raise DataError(f"ADE20K {self.split}: neither the list {data_csv} nor the folder {folder} exists "
                                f"(set root to the unpacked ADEChallengeData2016 folder)")
            relpaths = sorted(f"{SUBFOLDER[self.split]}/{p.name}" for p in folder.glob("*.jpg"))
            where = str(folder)
        extra = {"relative_file_path_": relpaths}
        scenes_file = os.path.join(root, "sceneCategories.txt")
        if os.path.isfile(scenes_file):
            scenes = dict(line.split(maxsplit=1) for line in read_list_file(scenes_file, "ADE20K scene list"))
            extra["scene_category"] = [scenes.get(Path(p).stem, "unknown") for p in relpaths]
        size = None if size is not None and size <= 0 else size
        super().__init__(
            image_paths=[os.path.join(root, "images", p) for p in relpaths],
            segmentation_paths=[os.path.join(root, "annotations", os.path.splitext(p)[0] + ".png") for p in relpaths],
            size=size, random_crop=random_crop, interpolation=interpolation, n_labels=N_LABELS,
            shift_segmentation=False, crop_size=crop_size if crop_size is not None else size,
            random_flip=random_flip, extra=extra, name=type(self).__name__, where=where)


class ADE20kTrain(ADE20kBase):
    split = "train"

    def __init__(self, config=None, size: int | None = None, random_crop: bool = True,
                 interpolation: str = "bicubic", crop_size: int | None = None, root: str = DEFAULT_ROOT,
                 data_csv: str | None = None, random_flip: bool = False):
        super().__init__(config, size, random_crop, interpolation, crop_size, root, data_csv, random_flip)


class ADE20kValidation(ADE20kBase):
    split = "validation"
