"""Open Images objects with boxes, in the original's layout of the published CSV files (V6):

    data_path/class-descriptions-boxable.csv      no header; LabelName,DisplayName ("/m/011k07,Tortoise")
    data_path/oidv6-train-annotations-bbox.csv    header ImageID,Source,LabelName,Confidence,XMin,XMax,
    data_path/validation-annotations-bbox.csv       YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,
    data_path/test-annotations-bbox.csv             IsInside (coordinates relative, flags 0/1; more columns ignored)
    data_path/train-images-boxable.csv, validation-images.csv, test-images.csv   image lists (required, as the
                                                  original; the images used are those with annotations)
    data_path/{train,validation,test}/<ImageID>.jpg

Label ids named by `category_mapping_target` are renamed before lookup (several kinds of person are
Person); objects smaller than min_object_area are dropped while reading. Group, occluded, depiction
and inside become token flags with use_group_parameter / use_additional_parameters.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable

from PIL import Image

from .annotated_objects import AnnotatedObjectsDataset
from .errors import DataError, UnreadableFile
from .helper_types import Annotation, Category

ANNOTATION_FILES = {"train": "oidv6-train-annotations-bbox.csv", "validation": "validation-annotations-bbox.csv",
                    "test": "test-annotations-bbox.csv"}
IMAGE_LISTS = {"train": "train-images-boxable.csv", "validation": "validation-images.csv", "test": "test-images.csv"}
BOX_COLUMNS = ("ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax", "IsOccluded",
               "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside")


def load_categories(path: Path) -> dict[str, Category]:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    bad = [i + 1 for i, row in enumerate(rows) if len(row) < 2]
    if bad:
        raise DataError(f"{path}: line {bad[0]} is not 'LabelName,DisplayName'")
    return {row[0]: Category(id=row[0], super_category=None, name=row[1]) for row in rows}


def _flag(value: str) -> bool:
    """0/1 as published; an unknown -1 counts as set, as in the original (its tokens depend on it)."""
    return bool(int(value))


def load_annotations(path: Path, min_object_area: float, mapping: dict[str, str],
                     category_number: dict[str, int]) -> dict[str, list[Annotation]]:
    """Box rows -> image id -> objects (area >= min_object_area, known category), in file order."""
    out: dict[str, list[Annotation]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in BOX_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: columns {missing} missing (header: {reader.fieldnames})")
        for i, row in enumerate(reader):
            try:
                x0, x1, y0, y1 = (float(row[k]) for k in ("XMin", "XMax", "YMin", "YMax"))
                width, height = x1 - x0, y1 - y0
                category_id = mapping.get(row["LabelName"], row["LabelName"])
                if width * height < min_object_area or category_id not in category_number:
                    continue
                out.setdefault(row["ImageID"], []).append(Annotation(
                    area=width * height, image_id=row["ImageID"], bbox=(x0, y0, width, height),
                    category_no=category_number[category_id], category_id=category_id, id=i, source=row["Source"],
                    confidence=float(row["Confidence"]), is_group_of=_flag(row["IsGroupOf"]),
                    is_truncated=_flag(row["IsTruncated"]), is_occluded=_flag(row["IsOccluded"]),
                    is_depiction=_flag(row["IsDepiction"]), is_inside=_flag(row["IsInside"])))
            except ValueError as exc:
                raise DataError(f"{path}: data row {i + 1}: {exc}") from None
    return out


class AnnotatedObjectsOpenImages(AnnotatedObjectsDataset):
    path_structure = {
        split: {"class_descriptions": "class-descriptions-boxable.csv", "annotations": ANNOTATION_FILES[split],
                "file_list": IMAGE_LISTS[split], "files": split}
        for split in ANNOTATION_FILES
    }
    description_keys = ("file_name", "file_path")

    def __init__(self, data_path: str, split: str, keys: Iterable[str], target_image_size: int,
                 min_object_area: float, min_objects_per_image: int, max_objects_per_image: int,
                 crop_method: str, random_flip: bool, no_tokens: int, use_group_parameter: bool,
                 encode_crop: bool, use_additional_parameters: bool, category_allow_list_target: str = "",
                 category_mapping_target: str = "", no_object_classes: int | None = None):
        super().__init__(data_path, split, keys, target_image_size, min_object_area, min_objects_per_image,
                         max_objects_per_image, crop_method, random_flip, no_tokens, use_group_parameter,
                         encode_crop, category_allow_list_target, category_mapping_target, no_object_classes)
        self.use_additional_parameters = use_additional_parameters
        self.set_categories(load_categories(self.paths["class_descriptions"]))
        self.set_annotations(load_annotations(self.paths["annotations"], self.min_object_area, self.category_mapping,
                                              self.category_number))

    def get_image_path(self, image_id: str) -> Path:
        return self.paths["files"] / f"{image_id:0>16}.jpg"

    def get_image_description(self, image_id: str) -> dict[str, Any]:
        path = self.get_image_path(image_id)
        return {"file_path": str(path), "file_name": path.name}

    def get_image_size(self, image_id: str) -> tuple[int, int]:
        path = self.get_image_path(image_id)
        try:
            with Image.open(path) as image:  # reads the header only
                return image.size
        except FileNotFoundError:
            raise UnreadableFile(str(path), "file not found") from None
        except Exception as exc:
            raise UnreadableFile(str(path), f"{type(exc).__name__}: {exc}") from None
