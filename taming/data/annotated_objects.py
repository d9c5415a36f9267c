"""Scene-layout datasets: images with object boxes, each example carrying its layout as tokens
(`objects_bbox`, `objects_center_points`, see taming/data/conditional_builder/), as the original's
coco_scene_images_transformer.yaml and open_images_scene_images_transformer.yaml train on.

Subclasses (annotated_objects_coco.py, annotated_objects_open_images.py) read their annotation
format and fill `categories`, `image_descriptions` and `annotations`; this class holds what both
share, in the original's order of operations:
- categories: optionally kept by an allow list of names and without the ids a mapping renames;
  numbered by their sorted id strings (Open Images' '/m/01s55n' last), which the tokens depend on;
- images: objects with area > min_object_area kept; images with between min_ and
  max_objects_per_image such objects kept, in order of their first annotation;
- an example: the image cropped (crop_method), maybe flipped, in [-1, 1] as (H, W, 3); the objects
  of the crop as tokens; `crop_bbox` (relative to the original image) and `flipped` always come
  along with the requested keys.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterable, Optional

from ..config import get_data_from_str
from .base import RobustDataset, SkipLog
from .conditional_builder import BUILDERS
from .conditional_builder.boxes import FULL_CROP
from .errors import DataError
from .helper_types import Annotation, Annotations, Category
from .imageio import read_rgb, to_float_image
from .layout_crops import CROP_METHODS, apply_crop, plan_crop

LAST_CATEGORY = "/m/01s55n"  # the original numbers this Open Images id after all others
EXAMPLE_KEYS = ("image", "image_path", "annotations", "objects_bbox", "objects_center_points", "crop_bbox",
                "flipped")


class AnnotatedObjectsDataset(RobustDataset):
    path_structure: dict[str, dict[str, str]] = {}  # split -> name -> path under data_path
    description_keys: tuple[str, ...] = ("file_name",)  # what get_image_description returns

    def __init__(self, data_path: str, split: str, keys: Iterable[str], target_image_size: int,
                 min_object_area: float, min_objects_per_image: int, max_objects_per_image: int,
                 crop_method: str, random_flip: bool, no_tokens: int, use_group_parameter: bool,
                 encode_crop: bool, category_allow_list_target: str = "", category_mapping_target: str = "",
                 no_object_classes: Optional[int] = None):
        name = type(self).__name__
        self.skips, self.where = SkipLog(name), str(data_path)
        self.data_path, self.split, self.keys = data_path, split, list(keys or [])
        unknown = sorted(set(self.keys) - set(EXAMPLE_KEYS) - set(self.description_keys))
        if unknown:
            raise DataError(f"{name}: keys {unknown} unknown; an example has "
                            f"{', '.join(EXAMPLE_KEYS + self.description_keys)}")
        self.target_image_size, self.min_object_area = int(target_image_size), float(min_object_area)
        self.min_objects_per_image, self.max_objects_per_image = int(min_objects_per_image), int(max_objects_per_image)
        if crop_method not in CROP_METHODS:
            raise DataError(f"{name}: crop_method {crop_method!r} unknown; use one of {', '.join(CROP_METHODS)}")
        self.crop_method, self.random_flip = crop_method, bool(random_flip)
        self.no_tokens, self.use_group_parameter, self.encode_crop = int(no_tokens), use_group_parameter, encode_crop
        self.no_object_classes = no_object_classes
        self.paths = self.build_paths(data_path)
        self.category_allow_list = None
        if category_allow_list_target:
            allowed = get_data_from_str(category_allow_list_target, f"{name}.category_allow_list_target")
            self.category_allow_list = {entry[0] for entry in allowed}  # (name, count) pairs
        self.category_mapping: dict[str, str] = {}
        if category_mapping_target:
            self.category_mapping = dict(get_data_from_str(category_mapping_target, f"{name}.category_mapping_target"))
        self.categories: dict[str, Category] = {}
        self.category_ids: list[str] = []
        self.category_number: dict[str, int] = {}
        self.image_descriptions: dict[str, dict] = {}
        self.annotations: dict[str, list[Annotation]] = {}
        self.image_ids: list[str] = []
        self._conditional_builders = None

    # ---- set-up steps subclasses call --------------------------------------------------------
    def build_paths(self, data_path: str) -> dict[str, Path]:
        if self.split not in self.path_structure:
            raise DataError(f"{type(self).__name__}: split {self.split!r} unknown; use one of "
                            f"{', '.join(self.path_structure)}")
        paths = {k: Path(data_path) / v for k, v in self.path_structure[self.split].items()}
        for path in paths.values():
            if not path.exists():
                raise DataError(f"{type(self).__name__}: {path} does not exist (data_path={data_path!r}, "
                                f"split {self.split!r})")
        return paths

    def set_categories(self, categories: dict[str, Category]) -> None:
        """Filter by allow list and mapping, then number the ids in sorted (string) order."""
        if self.category_allow_list:
            categories = {k: c for k, c in categories.items() if c.name in self.category_allow_list}
        if self.category_mapping:
            categories = {k: c for k, c in categories.items() if c.id not in self.category_mapping}
        self.categories = categories
        ids = sorted(categories)
        if LAST_CATEGORY in ids:
            ids.remove(LAST_CATEGORY)
            ids.append(LAST_CATEGORY)
        self.category_ids = ids
        self.category_number = {category_id: i for i, category_id in enumerate(ids)}

    def set_annotations(self, annotations: dict[str, list[Annotation]]) -> None:
        """Keep the objects above min_object_area and the images with an allowed number of them."""
        kept = {}
        for image_id, objects in annotations.items():
            large = [a for a in objects if a.area > self.min_object_area]
            if self.min_objects_per_image <= len(large) <= self.max_objects_per_image:
                kept[image_id] = large
        if not kept:
            raise DataError(f"{type(self).__name__}: no image of split {self.split!r} under {self.data_path} has "
                            f"{self.min_objects_per_image}..{self.max_objects_per_image} objects larger than "
                            f"{self.min_object_area}")
        self.annotations, self.image_ids = kept, list(kept)
        self.image_descriptions = {k: v for k, v in self.image_descriptions.items() if k in kept}
        if "image" in self.keys:
            self.probe()

    # ---- what subclasses provide ------------------------------------------------------------
    def get_image_path(self, image_id: str) -> Path:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_image_description(self, image_id: str) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_image_size(self, image_id: str) -> tuple[int, int]:  # pragma: no cover - abstract
        """(W, H) of the original image."""
        raise NotImplementedError

    # ---- categories ---------------------------------------------------------------------------
    @property
    def no_classes(self) -> int:
        return self.no_object_classes or len(self.categories)

    def get_category_number(self, category_id: str) -> int:
        return self.category_number[category_id]

    def get_category_id(self, category_no: int) -> str:
        return self.category_ids[category_no]

    def get_textual_label_for_category_id(self, category_id: str) -> str:
        return self.categories[category_id].name

    def get_textual_label_for_category_no(self, category_no: int) -> str:
        return self.categories[self.get_category_id(category_no)].name

    @property
    def conditional_builders(self) -> dict:
        """objects_center_points and objects_bbox builders (the class count is known once data is read)."""
        if self._conditional_builders is None:
            args = (self.no_classes, self.max_objects_per_image, self.no_tokens, self.encode_crop,
                    self.use_group_parameter, getattr(self, "use_additional_parameters", False))
            self._conditional_builders = {key: cls(*args) for key, cls in BUILDERS.items()}
        return self._conditional_builders

    # ---- examples -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, n: int) -> dict[str, Any]:
        image_id = self.image_ids[n]
        example = dict(self.get_image_description(image_id))
        example["annotations"] = Annotations(self.annotations[image_id])
        width, height = self.get_image_size(image_id)
        plan = plan_crop(width, height, self.target_image_size, self.crop_method)
        flipped = self.random_flip and random.random() < 0.5
        if "image" in self.keys:
            path = str(self.get_image_path(image_id))
            pixels = read_rgb(path)
            if pixels.shape[:2] != (height, width):  # the annotation's size is stale: plan on the file's
                plan = plan_crop(pixels.shape[1], pixels.shape[0], self.target_image_size, self.crop_method)
            pixels = apply_crop(pixels, plan)
            example["image_path"] = path
            example["image"] = to_float_image(pixels[:, ::-1] if flipped else pixels)  # (S, S, 3)
        example["crop_bbox"], example["flipped"] = plan.box or FULL_CROP, flipped
        for key, builder in self.conditional_builders.items():
            if key in self.keys:
                example[key] = builder.build(example["annotations"], plan.box, flipped)
        if self.keys:
            example = {k: example[k] for k in [*self.keys, "crop_bbox", "flipped"]}
        return example
