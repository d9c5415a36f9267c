"""Conditioning for the app: where examples come from, and the codes the GPT reads before the image.

Sources a model can use (`example_sources`):
    "validation data"        the run config's data.params.validation (or test) dataset; pre-tokenized
                             code shards are turned back into pixels by the two frozen stages
    "procedural landscapes"  taming.data.landscapes scenes rendered at the output size (no files),
                             for segmentation-conditioned models on its 8 labels
    "class"                  a class index chosen by number (class-conditional models)
Unconditional models need none. An Example holds model inputs at the output size (a spatial map
is resized to it, a landscape rendered at it); `encode_condition` turns one into codes.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils.data import IterableDataset

from taming.generation.runs import LoadedRun
from taming.config import ConfigError, instantiate_from_config
from taming.data.errors import DataError
from taming.data.landscapes import N_LABELS, ProceduralLandscapes
from taming.transformer.net2net import Net2Net, encode_conditioning
from taming.transformer.cond_stages import Labelator

VALIDATION, LANDSCAPES, CLASS = "validation data", "procedural landscapes", "class"
STREAM_EXAMPLES = 64  # examples offered from a stream (code or image shards): the first ones, in order
LANDSCAPE_SCENES = 1000
SEGMENTATION = "segmentation"


@dataclass
class Example:
    image: torch.Tensor | None  # (1, 3, H, W) in [-1, 1]: the real image, where there is one
    condition: torch.Tensor | None  # the cond stage's input: (1, C, H, W) map or (1,) class; None: unconditional
    caption: str


@dataclass
class Condition:
    codes: torch.Tensor  # (1, Lc): what the GPT reads before the image codes (maps, class token or SOS)
    grid: torch.Tensor | None  # (1, hc, wc): the same codes on their spatial grid; None for a class or SOS


def condition_kind(model: Net2Net) -> str:
    """'unconditional', 'class', or the batch key of a spatial conditioning ('segmentation', 'depth', ...)."""
    if model.be_unconditional:
        return "unconditional"
    if isinstance(model.cond_stage_model, Labelator):
        return CLASS
    return model.cond_stage_key


def landscapes_fit(model: Net2Net) -> bool:
    """Whether the built-in landscapes hold this model's conditioning: their 8-label maps or their images."""
    kind = condition_kind(model)
    encoder = getattr(model.cond_stage_model, "encoder", None)
    return kind == "image" or (kind == SEGMENTATION and getattr(encoder, "in_channels", None) == N_LABELS)


def validation_node(run: LoadedRun) -> tuple[str, Any] | None:
    for split in ("validation", "test"):
        node = OmegaConf.select(run.config, f"data.params.{split}")
        if node is not None:
            return f"data.params.{split}", node
    return None


def example_sources(run: LoadedRun) -> list[str]:
    kind = condition_kind(run.model)
    if kind == "unconditional":
        return []
    sources = [CLASS] if kind == CLASS else []
    if validation_node(run) is not None:
        sources.append(VALIDATION)
    if landscapes_fit(run.model):
        sources.append(LANDSCAPES)
    return sources


def validation_examples(run: LoadedRun) -> Sequence[Mapping[str, Any]]:
    """The run's validation dataset (random access), or the first STREAM_EXAMPLES items of a stream."""
    found = validation_node(run)
    if found is None:
        raise ConfigError(f"{run.source.name}: its config has no data.params.validation (or test) dataset")
    where, node = found
    dataset = instantiate_from_config(node, where=where)
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        dataset = list(islice(iter(dataset), STREAM_EXAMPLES))
    if len(dataset) == 0:
        raise DataError(f"{run.source.name}: the {where} dataset is empty")
    return dataset


def fit_condition(c: torch.Tensor, size: tuple[int, int], labels: bool) -> torch.Tensor:
    """A spatial condition (1, C, H, W) resized to size (H', W') pixels: label maps nearest (one-hot
    stays one-hot), continuous maps (depth, images) bilinear. Class labels pass unchanged."""
    if c.dim() != 4 or tuple(c.shape[-2:]) == tuple(size):
        return c
    if labels:
        return F.interpolate(c, size=size, mode="nearest")
    return F.interpolate(c, size=size, mode="bilinear", align_corners=False, antialias=True)


def _batch_of_one(item: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A dataset item as a batch of one; strings (file paths, human labels) left out."""
    return {k: torch.as_tensor(np.asarray(v))[None] for k, v in item.items()
            if not isinstance(v, str) and np.asarray(v).dtype.kind in "biuf"}


def _require(run: LoadedRun, item: Mapping[str, Any], key: str) -> Any:
    if key not in item:
        raise DataError(f"{run.source.name}: validation examples have no {key!r}, which the model is "
                        f"conditioned on (they hold {', '.join(sorted(map(str, item)))}); use another source")
    return item[key]


@torch.no_grad()
def _decoded_item(run: LoadedRun, item: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A pre-tokenized item (z_indices, c_indices or a class label) -> (image (1, 3, H, W), condition)."""
    model = run.model
    image = model.first_stage_model.decode_codes(torch.as_tensor(item[model.z_codes_key]).long()[None].to(run.device))
    kind = condition_kind(model)
    if kind == CLASS:
        return image, torch.as_tensor(_require(run, item, model.cond_stage_key)).reshape(1)
    stage = model.cond_stage_model
    if not callable(getattr(stage, "decode_codes", None)):
        raise DataError(f"{run.source.name}: the validation data are pre-tokenized and the cond stage "
                        f"({type(stage).__name__}) cannot decode codes into a picture; use another source")
    c = stage.decode_codes(torch.as_tensor(_require(run, item, model.c_codes_key)).long()[None].to(run.device))
    if kind == SEGMENTATION:  # decoded logits -> the most likely label, one-hot like the data
        c = F.one_hot(c.argmax(1), num_classes=c.shape[1]).permute(0, 3, 1, 2).float()
    return image, c


def dataset_example(run: LoadedRun, examples: Sequence[Mapping[str, Any]], index: int,
                    size: tuple[int, int]) -> Example:
    """Example `index` of the validation data (of a conditional model), its map fitted to `size` (H, W) pixels."""
    model = run.model
    item = examples[index]
    caption = f"validation example {index}"
    if model.z_codes_key in item:
        image, c = _decoded_item(run, item)
        caption += " (pre-tokenized: decoded codes)"
    else:
        batch = _batch_of_one(item)
        image = model.get_input(model.first_stage_key, batch) if model.first_stage_key in batch else None
        _require(run, batch, model.cond_stage_key)
        c = model.get_input(model.cond_stage_key, batch)
    if condition_kind(model) == CLASS:
        caption = f"{caption}: {class_caption(int(c.reshape(-1)[0]), item.get('human_label'))}"
    else:
        c = fit_condition(c.float(), size, labels=condition_kind(model) == SEGMENTATION)
    return Example(image, c, caption)


def landscape_example(run: LoadedRun, index: int, size: tuple[int, int]) -> Example:
    """Procedural scene `index` (test split) rendered at `size` (H, W) pixels."""
    scene = ProceduralLandscapes(height=size[0], width=size[1], length=LANDSCAPE_SCENES, split="test")[index]
    batch = _batch_of_one(scene)
    image = run.model.get_input("image", batch)  # (1, 3, H, W)
    c = run.model.get_input(run.model.cond_stage_key, batch)  # (1, 8, H, W) one-hot, or the image
    return Example(image, c, f"landscape {index}")


def class_caption(label: int, name: str | None = None) -> str:
    return f"class {label}" + (f" ({name})" if name else "")


def class_example(run: LoadedRun, label: int) -> Example:
    n_classes = run.model.cond_stage_model.n_classes
    if not 0 <= label < n_classes:
        raise ValueError(f"class {label} is not one of the model's {n_classes} classes (0..{n_classes - 1})")
    return Example(None, torch.tensor([label]), class_caption(label))


def unconditional_example() -> Example:
    return Example(None, None, "unconditional: no conditioning")


def encode_condition(run: LoadedRun, example: Example) -> Condition:
    """The conditioning codes of an example (the SOS token for an unconditional model)."""
    if run.model.be_unconditional:
        c = torch.zeros(1, device=run.device)  # the SOS provider reads only the batch size
    elif example.condition is None:
        raise ValueError(f"the model is conditioned on {condition_kind(run.model)}; this example has none")
    else:
        c = example.condition.to(run.device)
    codes = encode_conditioning(run.model, c)  # (1, hc, wc) on a grid, else (1, Nc)
    return Condition(codes.reshape(1, -1), codes if codes.dim() == 3 else None)
