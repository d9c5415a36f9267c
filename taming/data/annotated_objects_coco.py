"""COCO objects with boxes (things and stuff), in the layout the original reads:

    data_path/annotations/instances_{train,val}2017.json, stuff_{train,val}2017.json
    data_path/train2017/*.jpg, data_path/val2017/*.jpg

Boxes are COCO's pixel (x, y, w, h) divided by the image size; an object's area is its box area.
The stuff class "other" is dropped. COCO's `iscrowd` is stored as given (0/1), which the group flag
(an `is True` test) never takes up: the original's COCO tokens carry no group flag, and nor do ours.
"""
from __future__ import annotations

import json
from itertools import chain
from pathlib import Path
from typing import Any, Iterable

from .annotated_objects import AnnotatedObjectsDataset
from .errors import DataError
from .helper_types import Annotation, Category

SPLIT_FOLDERS = {"train": "train2017", "validation": "val2017"}


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read COCO annotations {path}: {exc}") from None


def load_categories(entries: Iterable[dict]) -> dict[str, Category]:
    return {str(c["id"]): Category(id=str(c["id"]), super_category=c.get("supercategory"), name=c["name"])
            for c in entries if c["name"] != "other"}


def load_annotations(entries: Iterable[dict], sizes: dict[str, tuple[int, int]],
                     category_number: dict[str, int], where: str) -> dict[str, list[Annotation]]:
    """COCO annotation records -> image id -> objects with relative boxes, in file order."""
    out: dict[str, list[Annotation]] = {}
    for entry in entries:
        image_id = str(entry["image_id"])
        if image_id not in sizes:
            raise DataError(f"{where}: annotation {entry.get('id')} names image {image_id}, which has no image entry")
        category_id = str(entry["category_id"])
        if category_id not in category_number:  # "other" or a category filtered away
            continue
        width, height = sizes[image_id]
        x, y, w, h = entry["bbox"]
        bbox = (x / width, y / height, w / width, h / height)
        out.setdefault(image_id, []).append(Annotation(
            area=bbox[2] * bbox[3], image_id=entry["image_id"], bbox=bbox, category_no=category_number[category_id],
            category_id=category_id, id=entry["id"], is_group_of=entry.get("iscrowd")))
    return out


class AnnotatedObjectsCoco(AnnotatedObjectsDataset):
    path_structure = {
        split: {"instances_annotations": f"annotations/instances_{folder}.json",
                "stuff_annotations": f"annotations/stuff_{folder}.json", "files": folder}
        for split, folder in SPLIT_FOLDERS.items()
    }
    description_keys = ("file_name", "id", "original_size", "coco_url", "license", "date_captured", "flickr_url")

    def __init__(self, data_path: str, split: str, keys: Iterable[str], target_image_size: int,
                 min_object_area: float, min_objects_per_image: int, max_objects_per_image: int,
                 crop_method: str, random_flip: bool, no_tokens: int, use_group_parameter: bool,
                 encode_crop: bool, use_things: bool = True, use_stuff: bool = True,
                 category_allow_list_target: str = "", category_mapping_target: str = "",
                 no_object_classes: int | None = None):
        super().__init__(data_path, split, keys, target_image_size, min_object_area, min_objects_per_image,
                         max_objects_per_image, crop_method, random_flip, no_tokens, use_group_parameter,
                         encode_crop, category_allow_list_target, category_mapping_target, no_object_classes)
        self.use_things, self.use_stuff = use_things, use_stuff
        instances = read_json(self.paths["instances_annotations"])
        stuff = [read_json(self.paths["stuff_annotations"])] if use_stuff else []
        sources = ([instances] if use_things else []) + stuff
        self.set_categories(load_categories(chain.from_iterable(s["categories"] for s in sources)))
        self.image_descriptions = {str(im["id"]): self._description(im) for im in instances["images"]}
        sizes = {k: d["original_size"] for k, d in self.image_descriptions.items()}
        annotations = load_annotations(chain.from_iterable(s["annotations"] for s in sources), sizes,
                                       self.category_number, str(self.paths["instances_annotations"].parent))
        self.set_annotations(annotations)

    @staticmethod
    def _description(image: dict) -> dict[str, Any]:
        return {"id": image["id"], "file_name": image["file_name"], "original_size": (image["width"], image["height"]),
                "coco_url": image.get("coco_url"), "license": image.get("license"),
                "date_captured": image.get("date_captured"), "flickr_url": image.get("flickr_url")}

    def get_image_path(self, image_id: str) -> Path:
        return self.paths["files"] / self.image_descriptions[str(image_id)]["file_name"]

    def get_image_description(self, image_id: str) -> dict[str, Any]:
        return dict(self.image_descriptions[image_id])

    def get_image_size(self, image_id: str) -> tuple[int, int]:
        return self.image_descriptions[image_id]["original_size"]
