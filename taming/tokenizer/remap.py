"""Remapping code indices to a subset of "used" codes (the original's `remap=` .npy option).

A model trained with `remap` predicts indices into `used` (a 1-D array of codebook rows saved
with numpy), e.g. to shrink the transformer's vocabulary to codes that actually occur. Codes not
in `used` map to `unknown_index`: "random" (a random used index), "extra" (one extra index,
len(used)), or a fixed integer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def load_used(remap: str | Path) -> torch.Tensor:
    path = Path(remap)
    if not path.is_file():
        raise FileNotFoundError(f"remap: file of used code indices not found: {path} (absolute: {path.resolve()})")
    try:
        used = np.load(path)
    except Exception as exc:
        raise ValueError(f"remap: cannot read {path} as a numpy .npy array: {exc}") from exc
    if used.ndim != 1 or not np.issubdtype(used.dtype, np.integer):
        raise ValueError(f"remap: {path} must hold a 1-D integer array of code indices, "
                         f"got shape {used.shape} dtype {used.dtype}")
    return torch.from_numpy(used.astype(np.int64))


def resolve_unknown(unknown_index: str | int, n_used: int) -> tuple[str | int, int]:
    """(unknown_index as used at run time, size of the remapped vocabulary re_embed)."""
    if unknown_index == "extra":
        return n_used, n_used + 1
    if unknown_index == "random" or isinstance(unknown_index, int):
        return unknown_index, n_used
    raise ValueError(f"unknown_index must be 'random', 'extra' or an integer, got {unknown_index!r}")


def setup_remap(quantizer: nn.Module, remap: str | Path | None, unknown_index: str | int, n_codes: int) -> None:
    """Set the original's attributes `remap`, `unknown_index`, `re_embed` (size of the index
    vocabulary) and, with a remap file, the persistent buffer `used` (state_dict key `*.used`)."""
    quantizer.remap = remap
    if remap is None:
        quantizer.unknown_index, quantizer.re_embed = unknown_index, n_codes
        return
    quantizer.register_buffer("used", load_used(remap))
    quantizer.unknown_index, quantizer.re_embed = resolve_unknown(unknown_index, quantizer.used.shape[0])


def to_used(inds: torch.Tensor, used: torch.Tensor, unknown_index: str | int, re_embed: int) -> torch.Tensor:
    """Codebook indices (B, ...) -> positions in `used`; codes outside `used` -> unknown_index."""
    shape = inds.shape
    flat = inds.reshape(shape[0], -1)  # (B, N)
    match = flat[:, :, None] == used.to(flat)[None, None, :]  # (B, N, U)
    new = match.long().argmax(-1)
    unknown = ~match.any(-1)
    if unknown_index == "random":
        new[unknown] = torch.randint(0, re_embed, (int(unknown.sum()),), device=new.device)
    else:
        new[unknown] = int(unknown_index)
    return new.reshape(shape)


def to_all(inds: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
    """Positions in `used` (B, ...) -> codebook indices; the "extra" index maps to code used[0]."""
    shape = inds.shape
    flat = inds.reshape(shape[0], -1).clone()
    flat[flat >= used.shape[0]] = 0
    return used.to(flat)[flat].reshape(shape)
