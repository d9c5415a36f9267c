"""Encode a dataset once into shards of codes (the library side of `taming tokenize`).

`CodeEncoder(model)` turns collated batches into image codes z (B, h, w), raster order, and, for a
transformer, its conditioning codes; `encode_split` writes one split's variants (original, flips,
seeded crops) as taming.data.codes shards; `data_config_for` gives the `data:` section that
trains on them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from taming.config import ConfigError
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


def variants(x: torch.Tensor, c: torch.Tensor | None, flip: bool, crops: int, crop_size: int | None,
             rng: np.random.Generator) -> Iterator[tuple[str, torch.Tensor, torch.Tensor | None]]:
    """(name, x, c) views of one batch; image and map share every crop window and flip."""
    views = [("orig", x, c)]
    if crops:
        H, W = x.shape[-2:]
        s = crop_size or min(H, W)
        if s > min(H, W):
            raise ConfigError(f"--crop-size {s} is larger than the images ({H}x{W})")
        for k in range(crops):
            i, j = int(rng.integers(0, H - s + 1)), int(rng.integers(0, W - s + 1))
            views.append((f"crop{k}", x[..., i:i + s, j:j + s],
                          None if c is None else c[..., i:i + s, j:j + s]))
    for name, vx, vc in views:
        yield name, vx, vc
        if flip:
            flipped = "flip" if name == "orig" else f"{name}_flip"
            yield flipped, vx.flip(-1), None if vc is None else vc.flip(-1)


def encode_split(tok: CodeEncoder, dataset: Any, pattern: str, *, batch_size: int, shard_size: int, flip: bool,
                   crops: int, crop_size: int | None, seed: int, limit: int | None) -> dict:
    if limit is not None and hasattr(dataset, "__len__"):
        dataset = Subset(dataset, range(min(limit, len(dataset))))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    rng = np.random.default_rng(seed)
    stats = {"images": 0, "samples": 0}
    grid: dict[str, Any] = {}

    def items() -> Iterator[dict]:
        index = 0
        for batch in loader:
            x, c = tok.inputs(batch)
            for name, vx, vc in variants(x, c, flip, crops, crop_size, rng):
                z, cc = tok.encode(vx, vc)
                grid.setdefault("z", list(z.shape[1:]))
                if cc is not None:
                    grid.setdefault("c", list(cc.shape[1:]))
                for b in range(z.shape[0]):
                    stats["samples"] += 1
                    yield {"key": f"{index + b:09d}_{name}", "z": z[b], "c": None if cc is None else cc[b],
                           "meta": {"index": index + b, "variant": name}}
            index += x.shape[0]
            stats["images"] = index
            if limit is not None and index >= limit:
                break

    paths = write_code_shards(pattern, items(), maxcount=shard_size)
    return {**stats, "shards": paths, **{f"{k}_shape": v for k, v in grid.items()}}


def data_config_for(out: Path, results: dict, batch_size: int) -> dict:
    """A `data:` section that trains on the shards (CodeShards streams, split by rank and worker)."""
    params: dict[str, Any] = {"batch_size": batch_size, "num_workers": 0}
    for split, res in results.items():
        params[split] = {"target": "taming.data.codes.CodeShards",
                         "params": {"urls": [str(Path(p).resolve()) for p in res["shards"]],
                                    "shuffle": 1000 if split == "train" else 0}}
    return {"data": {"target": "main.DataModuleFromConfig", "params": params}}


__all__ = ["CodeEncoder", "variants", "encode_split", "data_config_for"]
