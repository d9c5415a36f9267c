"""Layout conditioning in the app: for scene models (conditioned on `objects_bbox` or
`objects_center_points` tokens), a validation example is offered with its object boxes drawn, the
tokens of its layout being what the GPT reads. The page shows `LayoutExample.picture` where it
shows a map for other models; everything else (encoding, sampling) is the common path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from taming.generation.conditioning import Example
from taming.generation.runs import LoadedRun
from taming.data.annotated_objects import AnnotatedObjectsDataset
from taming.data.conditional_builder import BUILDERS
from taming.data.errors import DataError
from taming.images import make_grid

LAYOUT_KEYS = tuple(BUILDERS)  # cond_stage_keys of scene models: no map to upload, a layout to pick


@dataclass
class LayoutExample(Example):
    picture: np.ndarray | None = None  # (H, W, 3) uint8: the layout's boxes (or centres) and names


def is_scene_model(model: torch.nn.Module) -> bool:
    return not getattr(model, "be_unconditional", True) and getattr(model, "cond_stage_key", None) in LAYOUT_KEYS


def _names(dataset: AnnotatedObjectsDataset, tokens: torch.Tensor, key: str) -> list[str]:
    builder = dataset.conditional_builders[key]
    objects, _ = builder.inverse_build(tokens)
    return [dataset.get_textual_label_for_category_no(builder.representation_to_annotation(rep).category_no)
            for rep, _ in objects]


def layout_example(run: LoadedRun, examples: Sequence[Mapping[str, Any]], index: int,
                   size: tuple[int, int]) -> LayoutExample:
    """Validation example `index` of a scene model: its tokens (1, L), real image and the layout drawn
    at `size` (H, W) pixels."""
    key = run.model.cond_stage_key
    if not isinstance(examples, AnnotatedObjectsDataset):
        raise DataError(f"{run.source.name}: the model reads {key} layouts but its validation data "
                        f"({type(examples).__name__}) holds none")
    item = examples[index]
    tokens = torch.as_tensor(item[key]).long()  # (L,)
    image = None
    if "image" in item:
        image = torch.as_tensor(np.ascontiguousarray(item["image"])).permute(2, 0, 1)[None]  # (1, 3, H, W)
    drawn = examples.conditional_builders[key].plot(tokens, examples.get_textual_label_for_category_no,
                                                    (size[1], size[0]))
    names = _names(examples, tokens, key)
    caption = f"validation example {index} ({item.get('file_name', '?')}): {len(names)} objects: {', '.join(names)}"
    return LayoutExample(image, tokens[None], caption, make_grid(drawn[None], nrow=1, padding=0))
