"""Encode a dataset once into shards of codes (the library side of `taming tokenize`).

`CodeEncoder(model)` turns collated batches into image codes z (B, h, w), raster order, and, for a
transformer, its conditioning codes; `encode_split` writes one split's variants (original, flips,
seeded crops) as taming.data.codes shards; `data_config_for` gives the `data:` section that
trains on them.

A sample's codes depend on the image, its variant and the batch it was encoded in, never on the
process count: crop windows are drawn per image from (seed, image index), and with several processes
(taming/distributed.py) whole batches go round-robin to them, each writing its own shards
(<split>-r<rank>-000000.tar); the manifest (`manifest_for`) lists every shard.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from taming.config import ConfigError
from taming.distributed import World, lazy_batches
from taming.images import channels_first
from taming.transformer.cond_stages import encode_codes
from taming.transformer.net2net import encode_conditioning

from .codes import write_code_shards


class CodeEncoder:
    """Encodes batches into (z codes (B, h, w), c codes (B, ...) or None) with a loaded model."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model.eval()
        self.is_transformer = hasattr(model, "first_stage_model")
        self.first_stage = model.first_stage_model if self.is_transformer else model
        self.image_key = model.first_stage_key if self.is_transformer else getattr(model, "image_key", "image")
        self.cond_key = None
        if self.is_transformer and not model.be_unconditional:
            self.cond_key = model.cond_stage_key

    def inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images (B, C, H, W) and conditioning (B, C', H, W) (or None) of a collated batch."""
        if self.is_transformer:
            x = self.model.get_input(self.image_key, batch)
            c = self.model.get_input(self.cond_key, batch) if self.cond_key else None
        else:
            x, c = channels_first(batch[self.image_key]), None
        return x, c

    @torch.no_grad()
    def encode(self, x: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        quant, z = encode_codes(self.first_stage, x)
        z = z.reshape(quant.shape[0], *quant.shape[2:])  # (B, h, w), raster order
        if c is None:
            return z, None
        return z, encode_conditioning(self.model, c)


def crop_windows(index: int, seed: int, crops: int, height: int, width: int, size: int) -> list[tuple[int, int]]:
    """The (top, left) of image `index`'s `crops` windows of size x size: drawn from (seed, index) alone."""
    rng = np.random.default_rng((seed, index))
    return [(int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))) for _ in range(crops)]


def variants(x: torch.Tensor, c: torch.Tensor | None, flip: bool, crops: int, crop_size: int | None,
             seed: int, first: int) -> Iterator[tuple[str, torch.Tensor, torch.Tensor | None]]:
    """(name, x, c) views of one batch whose rows are images first, first + 1, ...; an image and its
    map share every crop window and flip."""
    views = [("orig", x, c)]
    if crops:
        H, W = x.shape[-2:]
        s = crop_size or min(H, W)
        if s > min(H, W):
            raise ConfigError(f"--crop-size {s} is larger than the images ({H}x{W})")
        windows = [crop_windows(first + b, seed, crops, H, W, s) for b in range(x.shape[0])]  # [B][crops]

        def crop(t: torch.Tensor, k: int) -> torch.Tensor:
            return torch.stack([t[b, ..., i:i + s, j:j + s] for b, (i, j) in enumerate(w[k] for w in windows)])

        for k in range(crops):
            views.append((f"crop{k}", crop(x, k), None if c is None else crop(c, k)))
    for name, vx, vc in views:
        yield name, vx, vc
        if flip:
            flipped = "flip" if name == "orig" else f"{name}_flip"
            yield flipped, vx.flip(-1), None if vc is None else vc.flip(-1)


def shard_pattern(out: Path, split: str, world: World) -> str:
    """One process: <split>-000000.tar ...; several: each its own <split>-r<rank>-000000.tar ..."""
    return str(out / (f"{split}-%06d.tar" if world.size == 1 else f"{split}-r{world.rank:03d}-%06d.tar"))


def encode_split(tok: CodeEncoder, dataset: Any, pattern: str, *, batch_size: int, shard_size: int, flip: bool,
                 crops: int, crop_size: int | None, seed: int, limit: int | None,
                 world: World | None = None, done: Callable[[int], None] | None = None) -> dict | None:
    """Encode a split's batches (this process's share) into shards `pattern % k` -> on rank 0 the whole
    split's {"images", "samples", "shards", "z_shape"[, "c_shape"]}; None on the other ranks. `done`
    is called with each batch's image count (a `taming.distributed.Tally` with several processes)."""
    world = world or World()
    if limit is not None and hasattr(dataset, "__len__"):
        dataset = Subset(dataset, range(min(limit, len(dataset))))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    device = next(tok.first_stage.parameters()).device
    stats = {"images": 0, "samples": 0}
    grid: dict[str, Any] = {}
    batches = lazy_batches(loader)
    if limit is not None:  # a stream: the batches that start before the limit, as one process reads them
        batches = itertools.takewhile(lambda numbered: numbered[0] * batch_size < limit, batches)

    def items() -> Iterator[dict]:
        for number, load in world.share(batches, done):
            x, c = tok.inputs(load())
            first = number * batch_size
            for name, vx, vc in variants(x, c, flip, crops, crop_size, seed, first):
                z, cc = tok.encode(vx.to(device), None if vc is None else vc.to(device))
                grid.setdefault("z", list(z.shape[1:]))
                if cc is not None:
                    grid.setdefault("c", list(cc.shape[1:]))
                for b in range(z.shape[0]):
                    stats["samples"] += 1
                    yield {"key": f"{first + b:09d}_{name}", "z": z[b], "c": None if cc is None else cc[b],
                           "meta": {"index": first + b, "variant": name}}
            stats["images"] += x.shape[0]
            if done is not None:
                done(x.shape[0])

    paths = write_code_shards(pattern, items(), maxcount=shard_size)
    every = world.gather({**stats, "shards": paths, **{f"{k}_shape": v for k, v in grid.items()}})
    if every is None:
        return None
    merged = {"images": sum(r["images"] for r in every), "samples": sum(r["samples"] for r in every),
              "shards": [p for r in every for p in r["shards"]]}
    for r in every:
        merged.update({k: v for k, v in r.items() if k.endswith("_shape")})
    return merged


def manifest_for(out: Path, results: dict, processes: int) -> dict:
    """manifest.json: every split's shards (names relative to `out`), sample and image counts."""
    return {"processes": processes, "splits": {
        split: {**{k: v for k, v in res.items() if k != "shards"},
                "shards": [str(Path(p).relative_to(out)) if Path(p).is_relative_to(out) else str(p)
                           for p in res["shards"]]}
        for split, res in results.items()}}


def data_config_for(out: Path, results: dict, batch_size: int) -> dict:
    """A `data:` section that trains on the shards (CodeShards streams, split by rank and worker)."""
    params: dict[str, Any] = {"batch_size": batch_size, "num_workers": 0}
    for split, res in results.items():
        params[split] = {"target": "taming.data.codes.CodeShards",
                         "params": {"urls": [str(Path(p).resolve()) for p in res["shards"]],
                                    "shuffle": 1000 if split == "train" else 0}}
    return {"data": {"target": "main.DataModuleFromConfig", "params": params}}


__all__ = ["CodeEncoder", "crop_windows", "variants", "shard_pattern", "encode_split", "manifest_for",
           "data_config_for"]
