"""Scenes from object layouts: a layout (objects with a category and a box) -> conditioning tokens ->
images sampled by a scene transformer (conditioned on `objects_bbox` or `objects_center_points`).

A layout file is JSON, boxes relative to the image, (x0, y0, w, h) in [0, 1]:

    {"objects": [{"category": "dog", "box": [0.1, 0.4, 0.35, 0.5]},
                 {"category": "grass", "box": [0.0, 0.7, 1.0, 0.3], "group": true}],
     "crop": [0, 0, 1, 1]}

`crop` (optional, default the whole image) is the part of the image to generate, when the model was
trained with encode_crop. Flags: "group", "occluded", "depiction", "inside" (models trained with
those parameters). The category names and the token builder come from the run's dataset config
(the dataset's annotation files are read for the names; its images are not).
"""
from __future__ import annotations

import difflib
import json
import math
import random
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from omegaconf import OmegaConf

from taming.config import ConfigError, get_obj_from_str, instantiate_from_config
from taming.data.annotated_objects import AnnotatedObjectsDataset
from taming.data.conditional_builder import BUILDERS
from taming.data.conditional_builder.boxes import FULL_CROP
from taming.data.errors import DataError
from taming.data.helper_types import Annotation
from taming.generation.conditioning import Condition
from taming.generation.drawing import SamplingSpec, sample_grid
from taming.generation.runs import LoadedRun

FLAGS = {"group": "is_group_of", "occluded": "is_occluded", "depiction": "is_depiction", "inside": "is_inside"}


def layout_dataset(config: Any, split: str = "validation", data_path: Optional[str] = None,
                   with_images: bool = False) -> AnnotatedObjectsDataset:
    """The run config's dataset of `split` (data.params.<split>), optionally at another data_path.
    Without images only the annotations are read (names, token builder, layouts of examples)."""
    where = f"data.params.{split}"
    node = OmegaConf.select(config, where) if OmegaConf.is_config(config) else None
    if node is None:
        raise ConfigError(f"the run's config has no {where} dataset to take categories and layouts from")
    node = OmegaConf.to_container(node, resolve=True)
    cls = get_obj_from_str(node.get("target"), f"{where}.target")
    if not (isinstance(cls, type) and issubclass(cls, AnnotatedObjectsDataset)):
        raise ConfigError(f"{where}: {node.get('target')} holds no object layouts; scene sampling needs "
                          "AnnotatedObjectsCoco or AnnotatedObjectsOpenImages")
    params = node.setdefault("params", {})
    if data_path is not None:
        params["data_path"] = data_path
    keys = [k for k in params.get("keys") or [] if with_images or k != "image"]
    params["keys"] = keys + [k for k in ("objects_bbox", "objects_center_points", "file_name") if k not in keys]
    return instantiate_from_config(node, where=where)


def category_numbers(dataset: AnnotatedObjectsDataset) -> dict[str, int]:
    """Category name -> number (the first number of a name that occurs twice)."""
    names: dict[str, int] = {}
    for number in range(len(dataset.category_ids)):
        names.setdefault(dataset.get_textual_label_for_category_no(number), number)
    return names


def _box(value: Any, where: str) -> tuple[float, float, float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 4 and all(isinstance(v, (int, float)) for v in value)):
        raise DataError(f"{where}: box must be [x0, y0, w, h] relative to the image, got {value!r}")
    x0, y0, w, h = (float(v) for v in value)
    inside = all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (x0, y0, w, h))
    if not inside or x0 + w > 1.0 + 1e-9 or y0 + h > 1.0 + 1e-9 or w <= 0 or h <= 0:
        raise DataError(f"{where}: box {list(value)} is outside [0, 1]; give [x0, y0, w, h] with x0 + w <= 1, "
                        f"y0 + h <= 1 and w, h > 0, relative to the image")
    return x0, y0, w, h


def parse_layout(layout: Any, categories: dict[str, int], where: str = "layout") \
        -> tuple[list[Annotation], tuple[float, float, float, float]]:
    """A layout (the JSON's content) -> (objects, crop box). DataError names the object at fault."""
    if isinstance(layout, list):
        layout = {"objects": layout}
    if not isinstance(layout, dict) or not isinstance(layout.get("objects"), list):
        raise DataError(f"{where}: expected {{\"objects\": [{{\"category\": ..., \"box\": [x0, y0, w, h]}}, ...]}}")
    objects = []
    for k, entry in enumerate(layout["objects"]):
        at = f"{where}: object {k}"
        if not isinstance(entry, dict) or "category" not in entry or "box" not in entry:
            raise DataError(f"{at}: needs \"category\" and \"box\", got {entry!r}")
        name = entry["category"]
        if name not in categories:
            hint = difflib.get_close_matches(str(name), list(categories), n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise DataError(f"{at}: unknown category {name!r}{extra} (the model knows {len(categories)}, e.g. "
                            f"{', '.join(list(categories)[:5])})")
        unknown = sorted(set(entry) - {"category", "box", *FLAGS})
        if unknown:
            raise DataError(f"{at}: unknown keys {unknown}; allowed: category, box, {', '.join(FLAGS)}")
        box = _box(entry["box"], f"{at} ({name})")
        flags = {field: bool(entry.get(key, False)) for key, field in FLAGS.items()}
        objects.append(Annotation(area=box[2] * box[3], image_id="layout", bbox=box, category_no=categories[name],
                                  category_id=str(categories[name]), **flags))
    crop = _box(layout["crop"], f"{where}: crop") if "crop" in layout else FULL_CROP
    return objects, crop


def read_layout(path: str | Path, categories: dict[str, int]) -> tuple[list[Annotation], tuple[float, ...]]:
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"layout file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read layout {path}: {exc}") from None
    return parse_layout(content, categories, str(path))


def layout_tokens(dataset: AnnotatedObjectsDataset, key: str, objects: Sequence[Annotation],
                  crop: Sequence[float] = FULL_CROP, seed: int = 0) -> torch.Tensor:
    """Objects -> the model's conditioning tokens (L,) (object order shuffled with `seed`, as in training)."""
    if key not in BUILDERS:
        raise ConfigError(f"model.params.cond_stage_key is {key!r}; scene sampling needs one of {', '.join(BUILDERS)}")
    builder = dataset.conditional_builders[key]
    if len(objects) > builder.no_max_objects:
        raise DataError(f"layout has {len(objects)} objects; the model takes at most {builder.no_max_objects}")
    return builder.build(objects, tuple(crop), rng=random.Random(seed))


@torch.no_grad()
def sample_scenes(model: torch.nn.Module, tokens: torch.Tensor, spec: SamplingSpec,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Layout tokens (B, L) -> images (B, 3, H, W) in [-1, 1] from a scene Net2NetTransformer."""
    run = LoadedRun.of(model)
    c_codes = model.encode_to_c(tokens.to(run.device))[1]  # (B, L): the layout tokens are the codes
    codes = sample_grid(run, Condition(c_codes, None), replace(spec, size=None), generator=generator)
    return model.first_stage_model.decode_codes(codes).clamp(-1, 1)


def training_dataset(model: torch.nn.Module) -> Optional[AnnotatedObjectsDataset]:
    """The layout dataset a model is being trained on (validation split first), if any."""
    datamodule = getattr(getattr(model, "_trainer", None), "datamodule", None)
    datasets = getattr(datamodule, "datasets", None) or {}
    for split in ("validation", "train"):
        dataset = getattr(datasets.get(split), "data", datasets.get(split))  # unwrap WrappedDataset
        if isinstance(dataset, AnnotatedObjectsDataset):
            return dataset
    return None


def layout_pictures(model: torch.nn.Module, tokens: torch.Tensor, size: tuple[int, int]) -> Optional[torch.Tensor]:
    """Layout tokens (B, L) drawn as (B, 3, H, W) in [-1, 1] (size (H, W)) for the training image log;
    None when the model is not a scene model or its dataset is unknown."""
    dataset = training_dataset(model) if getattr(model, "cond_stage_key", None) in BUILDERS else None
    if dataset is None or tokens.dim() != 2:
        return None
    builder = dataset.conditional_builders[model.cond_stage_key]
    label = dataset.get_textual_label_for_category_no
    return torch.stack([builder.plot(row.cpu(), label, (size[1], size[0])) for row in tokens]).to(tokens.device)
