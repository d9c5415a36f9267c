"""Samples over a dataset split, as the original make_samples.py: for example i of the run config's
data.params.<split>, with matching names,
    inputs/000000.png           the real image
    reconstructions/000000.png  its first-stage reconstruction (encode, quantize, decode)
    conditioning/000000.png     the conditioning as a picture (segmentation in colour, depth, image);
                                none for a class label
    samples/000000.png          a sample given that conditioning, at the image's size: a code grid
                                larger than the training window goes through the sliding window;
                                with completion (keep_rows) the image's top rows are kept
Example i is sampled with the generator of (seed, i) (`image_seed`); an example whose sample exists
is skipped, so a stopped job continues. Pre-tokenized splits (code shards) are decoded to pixels first.
With several processes (taming/distributed.py) examples go round-robin to them; a process reads only
its own examples of a map-style dataset.
"""
from __future__ import annotations

from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import IterableDataset

from taming.generation.conditioning import dataset_example, encode_condition
from taming.generation.runs import LoadedRun
from taming.generation.pictures import condition_picture
from taming.config import ConfigError, instantiate_from_config
from taming.distributed import World
from taming.generation.files import image_name, save_png, to_uint8
from taming.generation.drawing import SamplingSpec, decode_codes, sample_grid
from taming.generation.samples import image_seed

def split_items(run: LoadedRun, split: str, limit: int | None = None
                ) -> Iterator[tuple[int, Callable[[], Mapping[str, Any]]]]:
    """(index, load) of the run config's data.params.<split>, streams included, at most `limit`;
    load() reads the example (a map-style dataset reads it only then)."""
    node = OmegaConf.select(run.config, f"data.params.{split}")
    if node is None:
        have = OmegaConf.select(run.config, "data.params") or {}
        splits = [k for k in ("train", "validation", "test") if k in have]
        raise ConfigError(f"{run.source.name}: its config has no data.params.{split} "
                          f"(splits: {', '.join(splits) or 'none'}); pass --split or --config DATA.yaml")
    dataset = instantiate_from_config(node, where=f"data.params.{split}")
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        for i, item in islice(enumerate(dataset), limit):
            yield i, lambda item=item: item
        return
    for i in range(len(dataset) if limit is None else min(limit, len(dataset))):
        yield i, lambda i=i: dataset[i]


def image_size(run: LoadedRun, item: Mapping[str, Any]) -> tuple[int, int]:
    """(H, W) pixels of an example's image (pre-tokenized: its code grid times the factor)."""
    model = run.model
    if model.z_codes_key in item:
        h, w = np.asarray(item[model.z_codes_key]).shape[-2:]
        return h * run.factor, w * run.factor
    if model.first_stage_key not in item:
        raise ConfigError(f"{run.source.name}: examples have no {model.first_stage_key!r} image")
    return tuple(np.asarray(item[model.first_stage_key]).shape[:2])


@torch.no_grad()
def write_example(run: LoadedRun, index: int, item: Mapping[str, Any], out: Path, spec: SamplingSpec,
                  seed: int) -> None:
    size = image_size(run, item)
    example = dataset_example(run, [item], 0, size)
    name = image_name(index)
    given = None  # the real image's codes: its reconstruction, and the rows kept by completion
    if example.image is not None:
        image = example.image.to(run.device)
        given = run.model.first_stage_model.encode_to_codes(image)
        save_png(to_uint8(image)[0], out / "inputs" / name)
        save_png(to_uint8(decode_codes(run, given))[0], out / "reconstructions" / name)
    elif spec.keep_rows:
        raise ConfigError(f"{run.source.name}: example {index} of the split has no image to complete")
    picture = condition_picture(run, example)
    if picture is not None:
        save_png(picture, out / "conditioning" / name)
    condition = encode_condition(run, example)
    grid = (size[0] // run.factor, size[1] // run.factor)
    codes = sample_grid(run, condition, replace(spec, size=grid, seed=image_seed(seed, index)), given=given)
    save_png(to_uint8(decode_codes(run, codes))[0], out / "samples" / name)  # last: its file marks the example done


def sample_split(run: LoadedRun, split: str, out: Path, spec: SamplingSpec, seed: int,
                 limit: int | None = None, done: Callable[[int], None] | None = None,
                 world: World | None = None) -> tuple[int, int]:
    """Every example of the split (this process's share) -> (examples seen, examples written now)."""
    world = world or World()
    seen = written = 0
    for index, load in world.share(split_items(run, split, limit), done):
        seen += 1
        if not (out / "samples" / image_name(index)).exists():
            write_example(run, index, load(), out, spec, seed)
            written += 1
            if done:
                done(1)
    return seen, written
