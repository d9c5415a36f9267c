"""Unconditional and class-conditional sampling to a folder, as the original sample_fast.py.

Layout of OUTDIR:
    samples/000000.png ...            unconditional models
    samples/<class>/000000.png ...    class-conditional: -n images per class, one folder per class
    grid.png, settings.json           (written by the command)
Image i of class c is drawn with its own generator, seeded by (seed, c, i) alone (`image_seed`), and
decoded on its own, so it does not depend on the batch size, on which images share its batch, or
on the classes asked for. (The GPT's logits of a row can differ in the last float bit between batch
sizes; that changes a code only if a uniform draw falls within about 1e-7 of a boundary.) Images are written as each batch is decoded and never kept; a rerun skips existing files.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from taming.generation.conditioning import CLASS, Condition, condition_kind
from taming.generation.drawing import SamplingSpec, decode_codes, sample_grid
from taming.generation.runs import LoadedRun
from taming.config import ConfigError
from taming.distributed import World
from taming.generation.files import image_name, save_png, to_uint8
from taming.transformer.net2net import encode_conditioning

SAMPLES = "samples"
Written = Callable[[int], None]  # called with the number of images just written


@dataclass(frozen=True)
class Item:
    label: int | None  # class, None for an unconditional model
    index: int  # i: the sample's number within its class
    path: Path


def image_seed(seed: int, index: int, label: int | None = None) -> int:
    """The seed of sample `index` (of class `label`): numpy's SeedSequence over (seed, [label,] index),
    so neighbouring seeds and indices give unrelated streams."""
    key = (index,) if label is None else (label, index)
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, dtype=np.uint64)[0])


def class_list(run: LoadedRun, classes: str | None) -> list[int] | None:
    """The classes to sample: None for an unconditional model; "all" (default) or "1,2,3" otherwise."""
    kind = condition_kind(run.model)
    if kind == "unconditional":
        if classes not in (None, "all"):
            raise ConfigError(f"--classes {classes}: the model is unconditional")
        return None
    if kind != CLASS:
        raise ConfigError(f"{run.source.name}: the model is conditioned on {kind} maps, not on a class; "
                          "use taming sample-conditional (a dataset split) or taming sample-window (a map)")
    n_classes = run.model.cond_stage_model.n_classes
    if classes in (None, "all"):
        return list(range(n_classes))
    try:
        labels = [int(c) for c in classes.split(",") if c.strip()]
    except ValueError:
        raise ConfigError(f"--classes {classes!r}: expected 'all' or comma-separated class numbers") from None
    bad = [c for c in labels if not 0 <= c < n_classes]
    if bad or not labels:
        raise ConfigError(f"--classes {classes!r}: the model's classes are 0..{n_classes - 1}")
    return labels


def plan(out: Path, n: int, labels: Sequence[int] | None) -> list[Item]:
    """Every image of the job: n unconditional samples, or n per class in class folders."""
    folder = out / SAMPLES
    if labels is None:
        return [Item(None, i, folder / image_name(i)) for i in range(n)]
    return [Item(c, i, folder / str(c) / image_name(i)) for c in labels for i in range(n)]


def batches(items: Sequence[Item], size: int) -> Iterator[list[Item]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def sample_images(run: LoadedRun, labels: Sequence[int | None], seeds: Sequence[int],
                  spec: SamplingSpec) -> torch.Tensor:
    """One image per (label, seed) at the training size -> (B, 3, H, W) in [-1, 1]."""
    model, device = run.model, run.device
    c = torch.tensor([0 if label is None else label for label in labels], device=device)  # SOS: batch size only
    cond = encode_conditioning(model, c).reshape(len(labels), -1)  # (B, Lc): a class token or SOS
    generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    codes = sample_grid(run, Condition(cond, None), replace(spec, size=None), generator=generators)
    return decode_codes(run, codes)


def write_samples(run: LoadedRun, items: Sequence[Item], spec: SamplingSpec, seed: int, batch_size: int,
                  written: Written | None = None, world: World | None = None) -> int:
    """Sample and write every item whose file does not exist yet -> how many were (by all processes):
    with several processes (`world`), batches of those items go round-robin to the processes, so
    each batch is the one a single process would draw."""
    world = world or World()
    todo = world.from_main(lambda: [item for item in items if not item.path.exists()])
    for batch in world.share(list(batches(todo, batch_size)), written):
        images = sample_images(run, [it.label for it in batch],
                               [image_seed(seed, it.index, it.label) for it in batch], spec)
        for item, pixels in zip(batch, to_uint8(images)):
            save_png(pixels, item.path)
        if written is not None:
            written(len(batch))
    return len(todo)
