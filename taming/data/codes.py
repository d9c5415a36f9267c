"""Pre-tokenized data: VQGAN code indices stored once (`taming tokenize`), read without the VQGAN.

Shard format (tar, written by `write_code_shards`, one sample per image variant):
    <key>.z.npy     image codes, (h, w) int16 (int32 when a code exceeds 32767), raster order
    <key>.c.npy     conditioning codes (optional), (hc, wc) or (n,), same dtype rule
    <key>.cls       class index as ASCII text (optional)
    <key>.json      free metadata (optional), e.g. {"source": "img.png", "variant": "flip"}
Keys are "<index:09d>" or "<index:09d>_<variant>" (flip and crop variants of one image are separate
samples, so a training run sees each variant as an example).

`CodeShards(urls, ...)` streams them (shuffling, DDP and worker splitting, resampling as
`taming.data.webdataset.ShardStream`) as {"z_indices": (h, w) int64, "c_indices": int64 (if
stored), "class_label": int (if stored), "__key__": str}. Flatten with `.reshape(B, -1)` for the
transformer.

Local arrays (`write_code_arrays` / `CodeDataset`): a folder holding z.npy (N, h, w), optional
c.npy (N, ...) and class_label.npy (N,), memory-mapped, map-style (random access, any sampler).
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np
from torch.utils.data import Dataset

from .errors import DataError, UnreadableFile
from .webdataset import ShardStream, ShardWriter, npy_bytes


def compact(codes) -> np.ndarray:
    """Integer codes -> the smallest of int16/int32 that holds them (codebooks up to 32767 fit int16)."""
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise DataError(f"codes must be integers, got {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() > np.iinfo(np.int32).max):
        raise DataError(f"codes out of range: {codes.min()}..{codes.max()}")
    small = codes.size == 0 or codes.max() <= np.iinfo(np.int16).max
    return codes.astype(np.int16 if small else np.int32)


def write_code_shards(pattern: str, items: Iterable[dict], maxcount: int = 10000) -> list[str]:
    """Write code samples into tar shards named `pattern % k` (local or fsspec URL).

    items: dicts with "z" ((h, w) integer array or tensor), optional "c", "class_label" (int),
    "key" (str; default the running index, 9 digits), "meta" (JSON-able dict). Returns the paths."""
    with ShardWriter(pattern, maxcount) as writer:
        for index, item in enumerate(items):
            if "z" not in item:
                raise DataError(f"code sample {index} has no 'z' (image codes)")
            sample = {"__key__": str(item.get("key", f"{index:09d}")),
                      "z.npy": npy_bytes(compact(_numpy(item["z"])))}
            if item.get("c") is not None:
                sample["c.npy"] = npy_bytes(compact(_numpy(item["c"])))
            if item.get("class_label") is not None:
                sample["cls"] = str(int(item["class_label"])).encode()
            if item.get("meta") is not None:
                sample["json"] = json.dumps(item["meta"]).encode()
            writer.write(sample)
    return writer.paths


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _load_npy(data: bytes, where: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False).astype(np.int64)
    except Exception as exc:
        raise UnreadableFile(where, f"bad .npy ({type(exc).__name__}: {exc})") from None


class CodeShards(ShardStream):
    """Code samples from tar shards (format in the module docstring)."""

    def decode(self, sample: dict) -> dict:
        where = f"{sample['__url__']}#{sample['__key__']}"
        if "z.npy" not in sample:
            raise UnreadableFile(where, f"no z.npy member (has {sorted(k for k in sample if not k.startswith('__'))})")
        out = {"z_indices": _load_npy(sample["z.npy"], where + ".z.npy"), "__key__": sample["__key__"]}
        if "c.npy" in sample:
            out["c_indices"] = _load_npy(sample["c.npy"], where + ".c.npy")
        if "cls" in sample:
            out["class_label"] = int(sample["cls"].decode().strip())
        return out


def write_code_arrays(folder: str | os.PathLike, z, c=None, class_label=None) -> Path:
    """Save stacked codes for `CodeDataset`: z (N, h, w), c (N, ...), class_label (N,)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    z = compact(_numpy(z))
    np.save(folder / "z.npy", z)
    for name, value in (("c", c), ("class_label", class_label)):
        if value is not None:
            value = _numpy(value)
            if len(value) != len(z):
                raise DataError(f"{name} has {len(value)} rows but z has {len(z)}")
            np.save(folder / f"{name}.npy", compact(value) if name == "c" else value.astype(np.int64))
    return folder


class CodeDataset(Dataset):
    """Map-style view of a `write_code_arrays` folder; arrays are memory-mapped, not loaded."""

    def __init__(self, folder: str | os.PathLike):
        folder = Path(folder)
        if not (folder / "z.npy").is_file():
            raise DataError(f"code folder {folder.absolute()} has no z.npy (write it with write_code_arrays)")
        self.z = np.load(folder / "z.npy", mmap_mode="r")
        self.c = np.load(folder / "c.npy", mmap_mode="r") if (folder / "c.npy").is_file() else None
        self.cls = np.load(folder / "class_label.npy") if (folder / "class_label.npy").is_file() else None
        for name, value in (("c.npy", self.c), ("class_label.npy", self.cls)):
            if value is not None and len(value) != len(self.z):
                raise DataError(f"{folder / name} has {len(value)} rows but z.npy has {len(self.z)}")

    def __len__(self) -> int:
        return len(self.z)

    def __getitem__(self, i: int) -> dict:
        out = {"z_indices": np.asarray(self.z[i], dtype=np.int64)}
        if self.c is not None:
            out["c_indices"] = np.asarray(self.c[i], dtype=np.int64)
        if self.cls is not None:
            out["class_label"] = int(self.cls[i])
        return out
