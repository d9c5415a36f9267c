"""COCO-Stuff: images, captions and segmentations (the classes coco_cond_stage.yaml names).

Layout under `root` (default "data", giving the original's paths):
    coco/train2017/*.jpg, coco/val2017/*.jpg
    coco/annotations/captions_train2017.json, captions_val2017.json   (image list + captions)
    cocostuffthings/{train,val}2017/*.png         stuff+thing label maps, unlabeled = 255 (use_stuffthing)
    coco/annotations/stuff_{train,val}2017_pixelmaps/*.png           stuff-only maps (otherwise)
With onehot_segmentation (requires use_stuffthing), labels are shifted by one in uint8 (unlabeled
255 -> 0, classes 0..181 -> 1..182) and one-hot over 183 classes, as the original; otherwise the map
is returned as an RGB image in [-1, 1]. Train: rescale + random crop; validation: rescale + centre
crop; force_no_crop: resize to size x size. Example keys: image, segmentation, caption ([one random
caption]), img_path, seg_path, filename_.
`Examples(size)` is the small S-FLCKR-style list (data/coco_examples.txt, 183 labels, shifted).
"""
from __future__ import annotations

import json
import os
import random

import numpy as np

from .base import RobustDataset, SkipLog, keep_existing
from .errors import DataError
from .imageio import open_image, read_labels, read_rgb, to_float_image, to_rgb_array
from .segmentation import SegmentationBase, one_hot
from .transforms import PairedTransform, resize_array

N_LABELS_STUFFTHING = 183


class Examples(SegmentationBase):
    def __init__(self, size: int = 256, root: str | None = None, data_csv: str | None = None):
        super().__init__(
            data_csv=data_csv or (os.path.join(root, "examples.txt") if root else "data/coco_examples.txt"),
            data_root=os.path.join(root, "images") if root else "data/coco_images",
            segmentation_root=os.path.join(root, "segmentations") if root else "data/coco_segmentations",
            size=size, random_crop=False, interpolation="bicubic", n_labels=N_LABELS_STUFFTHING,
            shift_segmentation=True, name="coco.Examples")


class CocoBase(RobustDataset):
    split = "train"

    def __init__(self, size: int | None = None, dataroot: str = "", datajson: str = "",
                 onehot_segmentation: bool = False, use_stuffthing: bool = False, crop_size: int | None = None,
                 force_no_crop: bool = False, given_files=None, segmentation_root: str | None = None):
        name = type(self).__name__
        self.skips = SkipLog(name)
        if onehot_segmentation and not use_stuffthing:
            raise DataError(f"{name}: onehot_segmentation needs use_stuffthing=true (the stuff-only pixel maps "
                            f"store labels differently)")
        if not os.path.isfile(datajson):
            raise DataError(f"{name}: caption file not found: {datajson} (absolute: {os.path.abspath(datajson)})")
        with open(datajson, encoding="utf-8") as handle:
            data = json.load(handle)
        self.onehot, self.size = onehot_segmentation, size
        given = set(given_files) if given_files is not None else None
        captions: dict[int, list[str]] = {}
        for note in data.get("annotations", []):
            captions.setdefault(note["image_id"], []).append(str(note["caption"]))
        images, segs, caps = [], [], []
        for entry in data["images"]:
            png = os.path.splitext(entry["file_name"])[0] + ".png"
            if given is not None and png not in given:
                continue
            images.append(os.path.join(dataroot, entry["file_name"]))
            segs.append(os.path.join(segmentation_root, png))
            caps.append(captions.get(entry["id"], [""]))
        self.where = f"{datajson} (images under {dataroot}, label maps under {segmentation_root})"
        images, (segs, caps) = keep_existing(images, segs, caps, owner=name, log=self.skips, where=self.where)
        self.images, self.segs, self.captions = images, segs, caps
        if force_no_crop:
            self.transform = None  # plain resize to size x size
        else:
            self.transform = PairedTransform(size=size, crop_size=crop_size or size,
                                             random_crop=self.split != "validation", interpolation="bicubic")
        self.probe()

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> dict:
        image = read_rgb(self.images[i])
        if self.onehot:
            seg = read_labels(self.segs[i]) + np.uint8(1)  # unlabeled 255 -> 0, classes shift up by one
        else:
            seg = to_rgb_array(open_image(self.segs[i]))
        if self.transform is None:
            image = resize_array(image, (self.size, self.size), "bicubic")
            seg = resize_array(seg, (self.size, self.size), "nearest")
        else:
            out = self.transform(image, segmentation=seg)
            image, seg = out["image"], out["segmentation"]
        segmentation = one_hot(seg, N_LABELS_STUFFTHING, self.segs[i]) if self.onehot else to_float_image(seg)
        return {"image": to_float_image(image), "segmentation": segmentation,
                "caption": [random.choice(self.captions[i])], "img_path": self.images[i],
                "seg_path": self.segs[i], "filename_": os.path.basename(self.images[i])}


def _segmentation_root(root: str, split: str, use_stuffthing: bool) -> str:
    if use_stuffthing:
        return os.path.join(root, "cocostuffthings", f"{split}2017")
    return os.path.join(root, "coco", "annotations", f"stuff_{split}2017_pixelmaps")


class CocoImagesAndCaptionsTrain(CocoBase):
    split = "train"

    def __init__(self, size: int, onehot_segmentation: bool = False, use_stuffthing: bool = False,
                 crop_size: int | None = None, force_no_crop: bool = False, root: str = "data"):
        super().__init__(size=size, dataroot=os.path.join(root, "coco", "train2017"),
                         datajson=os.path.join(root, "coco", "annotations", "captions_train2017.json"),
                         onehot_segmentation=onehot_segmentation, use_stuffthing=use_stuffthing,
                         crop_size=crop_size, force_no_crop=force_no_crop,
                         segmentation_root=_segmentation_root(root, "train", use_stuffthing))


class CocoImagesAndCaptionsValidation(CocoBase):
    split = "validation"

    def __init__(self, size: int, onehot_segmentation: bool = False, use_stuffthing: bool = False,
                 crop_size: int | None = None, force_no_crop: bool = False, given_files=None, root: str = "data"):
        super().__init__(size=size, dataroot=os.path.join(root, "coco", "val2017"),
                         datajson=os.path.join(root, "coco", "annotations", "captions_val2017.json"),
                         onehot_segmentation=onehot_segmentation, use_stuffthing=use_stuffthing,
                         crop_size=crop_size, force_no_crop=force_no_crop, given_files=given_files,
                         segmentation_root=_segmentation_root(root, "val", use_stuffthing))
