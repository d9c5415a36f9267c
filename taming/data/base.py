"""Building blocks every file-backed dataset uses: list files, skip-and-count of bad files,
`ImagePaths` (a list of image files -> examples), `NumpyPaths` (CelebA-HQ .npy), and
`ConcatDatasetWithIndex` (which dataset an example came from).

Bad input never ends a long run and never passes silently:
- at construction, listed files that do not exist are dropped, counted and logged (one summary line
  with the names); if none remain, or none of them can be decoded, `DataError` stops at once and
  says where it looked;
- in `__getitem__`, a file that fails to decode is remembered, logged with its name and a running
  count, and the next readable index is served instead.
Counts are per process: each DataLoader worker logs its own skips.
"""
from __future__ import annotations

import bisect
import logging
import os
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from .errors import DataError, UnreadableFile
from .imageio import read_rgb, to_float_image
from .transforms import PairedTransform

logger = logging.getLogger("taming.data")

NAMES_IN_SUMMARY = 20


def read_list_file(path: str | os.PathLike, what: str = "file list") -> list[str]:
    """Non-empty, stripped lines of a text file; `DataError` naming the file if it is missing."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path} (absolute: {path.resolve()})")
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def _names(paths: Sequence[str]) -> str:
    shown = ", ".join(str(p) for p in paths[:NAMES_IN_SUMMARY])
    more = len(paths) - NAMES_IN_SUMMARY
    return shown + (f", ... and {more} more" if more > 0 else "")


class SkipLog:
    """Counts and names of skipped (unreadable, missing) and upscaled files of one dataset."""

    def __init__(self, owner: str):
        self.owner = owner
        self.missing: list[str] = []
        self.unreadable: dict[str, str] = {}
        self.upscaled: list[str] = []

    def record_missing(self, missing: Sequence[str], total: int) -> None:
        if missing:
            self.missing.extend(missing)
            logger.warning("%s: %d of %d listed files do not exist and are skipped: %s",
                           self.owner, len(missing), total, _names(missing))

    def record_unreadable(self, error: UnreadableFile) -> None:
        self.unreadable[error.path] = error.reason
        logger.warning("%s: skipped unreadable file %s (%s); %d skipped so far in this process",
                       self.owner, error.path, error.reason, len(self.unreadable))

    def record_upscaled(self, path: str) -> None:
        self.upscaled.append(path)
        n = len(self.upscaled)
        if n <= NAMES_IN_SUMMARY or n & (n - 1) == 0:  # name the first few, then at powers of two
            logger.warning("%s: image smaller than the crop, upscaled: %s (%d so far)", self.owner, path, n)

    def summary(self) -> str:
        """One line: what was skipped or upscaled, with names."""
        parts = [f"{self.owner}: {len(self.missing)} missing, {len(self.unreadable)} unreadable, "
                 f"{len(self.upscaled)} upscaled"]
        if self.missing:
            parts.append(f"missing: {_names(self.missing)}")
        if self.unreadable:
            parts.append(f"unreadable: {_names(list(self.unreadable))}")
        if self.upscaled:
            parts.append(f"upscaled: {_names(self.upscaled)}")
        return "; ".join(parts)


def keep_existing(paths: Sequence[str], *aligned: Sequence[Any], owner: str, log: SkipLog,
                  where: str) -> tuple[list[str], list[list[Any]]]:
    """Drop paths that do not exist (and the same positions of the aligned lists).

    `DataError` if the list is empty or nothing exists, naming `where` (the folder or list file)."""
    if len(paths) == 0:
        raise DataError(f"{owner}: no files listed; looked in {where}")
    exists = [os.path.isfile(p) for p in paths]
    missing = [p for p, ok in zip(paths, exists) if not ok]
    if len(missing) == len(paths):
        raise DataError(f"{owner}: none of the {len(paths)} listed files exist; looked in {where} "
                        f"(first missing: {_names(missing[:3])})")
    log.record_missing(missing, len(paths))
    keep = [p for p, ok in zip(paths, exists) if ok]
    return keep, [[v for v, ok in zip(values, exists) if ok] for values in aligned]


class RobustDataset(Dataset):
    """Map-style dataset that skips files it cannot decode.

    Subclasses implement `__len__` and `load(i) -> dict` (which may raise `UnreadableFile`) and set
    `self.skips = SkipLog(name)` and `self.where` (for messages). Call `self.probe()` at the end of
    `__init__`: it decodes files until one works, so a dataset with nothing readable fails at once.
    """

    skips: SkipLog
    where: str = "?"

    def load(self, i: int) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, i: int) -> dict:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.skips.owner}: index {i} out of range for {n} examples")
        i %= n
        bad = self.__dict__.setdefault("_bad_indices", set())  # indices that failed to decode
        for step in range(n):
            j = (i + step) % n
            if j in bad:
                continue
            try:
                return self.load(j)
            except UnreadableFile as error:
                bad.add(j)
                self.skips.record_unreadable(error)
        raise DataError(f"{self.skips.owner}: none of the {n} files can be read; looked in {self.where}. "
                        f"{self.skips.summary()}")

    def probe(self) -> None:
        """Decode examples until one works (global random state untouched); `DataError` if none does."""
        state = random.getstate()
        try:
            self[0]
        finally:
            random.setstate(state)


class ImagePaths(RobustDataset):
    """A list of image files -> {"image": (H, W, 3) float32 in [-1, 1], "file_path_": str, **labels}.

    size/crop_size/random_crop/random_flip/interpolation/crop_anchor: see `PairedTransform`. `labels` maps a key
    to a list aligned with `paths` (class_label, human_label, relpath, ...), returned per example.
    """

    def __init__(self, paths: Sequence[str], size: int | None = None, random_crop: bool = False,
                 labels: Mapping[str, Sequence[Any]] | None = None, *, crop_size: int | None = None,
                 random_flip: bool = False, interpolation: str = "bicubic", crop_anchor: str = "center",
                 name: str = "ImagePaths", where: str | None = None, probe: bool = True):
        self.skips = SkipLog(name)
        self.where = where or (os.path.dirname(str(paths[0])) if len(paths) else "(empty list)")
        labels = dict(labels or {})
        keys = list(labels)
        paths, aligned = keep_existing([str(p) for p in paths], *[labels[k] for k in keys],
                                       owner=name, log=self.skips, where=self.where)
        self.labels = dict(zip(keys, aligned))
        self.labels["file_path_"] = paths
        self._length = len(paths)
        self.transform = PairedTransform(size=size, crop_size=crop_size, random_crop=random_crop,
                                         random_flip=random_flip, interpolation=interpolation,
                                         crop_anchor=crop_anchor)
        if probe:
            self.probe()

    def __len__(self) -> int:
        return self._length

    def read(self, path: str) -> np.ndarray:
        """(H, W, 3) uint8; overridden by `NumpyPaths`."""
        return read_rgb(path)

    def load(self, i: int) -> dict:
        path = self.labels["file_path_"][i]
        before = self.transform.upscaled
        out = self.transform(self.read(path))
        if self.transform.upscaled != before:
            self.skips.record_upscaled(path)
        example = {k: v[i] for k, v in self.labels.items()}
        example["image"] = to_float_image(out["image"])
        return example


class NumpyPaths(ImagePaths):
    """CelebA-HQ style .npy files holding one uint8 image as (1, 3, H, W), (3, H, W) or (H, W, 3)."""

    def read(self, path: str) -> np.ndarray:
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise UnreadableFile(path, f"not a readable .npy file ({type(exc).__name__}: {exc})") from None
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if array.ndim == 3 and array.shape[0] == 3 and array.shape[2] != 3:
            array = array.transpose(1, 2, 0)  # (3, H, W) -> (H, W, 3)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise UnreadableFile(path, f"expected a uint8 image of shape (1, 3, H, W), got {array.shape} {array.dtype}")
        return np.ascontiguousarray(array)


class PairedFiles(RobustDataset):
    """Images each with one aligned map file (a label map, a depth map), sharing one crop and flip.

    Subclasses set `map_key` (the example key, e.g. "segmentation"; paths go under
    "<map_key>_path_") and implement `read_map(path) -> (H, W[, C]) array` and
    `finish(map) -> the example's value`. Pairs where either file is missing are dropped and logged."""

    map_key = "map"

    def __init__(self, image_paths: Sequence[str], map_paths: Sequence[str], transform: PairedTransform,
                 labels: Mapping[str, Sequence[Any]] | None = None, name: str = "PairedFiles", where: str = "?"):
        self.skips = SkipLog(name)
        self.where = where
        labels = dict(labels or {})
        keys = list(labels)
        image_paths, aligned = keep_existing(list(image_paths), list(map_paths), *[labels[k] for k in keys],
                                             owner=name, log=self.skips, where=where)
        map_paths, aligned = keep_existing(aligned[0], image_paths, *aligned[1:], owner=name, log=self.skips,
                                           where=f"{where} ({self.map_key} files)")
        self.labels = dict(zip(keys, aligned[1:]))
        self.labels["file_path_"] = aligned[0]
        self.labels[f"{self.map_key}_path_"] = map_paths
        self.transform = transform
        self.probe()

    def __len__(self) -> int:
        return len(self.labels["file_path_"])

    def read_map(self, path: str) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self, value: np.ndarray, where: str) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, i: int) -> dict:
        example = {k: v[i] for k, v in self.labels.items()}
        map_path = example[f"{self.map_key}_path_"]
        image = read_rgb(example["file_path_"])
        value = self.read_map(map_path)
        if value.shape[:2] != image.shape[:2]:
            raise UnreadableFile(map_path, f"{self.map_key} is {value.shape[:2]} but its image is {image.shape[:2]}")
        before = self.transform.upscaled
        out = self.transform(image, **{self.map_key: value})
        if self.transform.upscaled != before:
            self.skips.record_upscaled(example["file_path_"])
        example["image"] = to_float_image(out["image"])
        example[self.map_key] = self.finish(out[self.map_key], map_path)
        return example


class Forwarding(Dataset):
    """Holds a dataset as `self.data` and forwards to it, as the original's wrapper datasets."""

    data: Any

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> Any:
        return self.data[i]


class ConcatDatasetWithIndex(ConcatDataset):
    """ConcatDataset whose items are (example, index of the dataset it came from)."""

    def __getitem__(self, idx: int):
        if idx < 0:
            if -idx > len(self):
                raise IndexError("absolute value of index should not exceed dataset length")
            idx = len(self) + idx
        dataset_idx = bisect.bisect_right(self.cumulative_sizes, idx)
        sample_idx = idx if dataset_idx == 0 else idx - self.cumulative_sizes[dataset_idx - 1]
        return self.datasets[dataset_idx][sample_idx], dataset_idx


def skip_summaries(dataset: Any) -> list[str]:
    """One summary line per file-backed dataset inside `dataset` (following wrappers' .data,
    .dataset, .datasets), for the end-of-run log. Counts are those of the calling process."""
    found, stack, seen = [], [dataset], set()
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(getattr(item, "skips", None), SkipLog):
            found.append(item.skips.summary())
        if hasattr(item, "bad_shards"):
            found.append(f"{type(item).__name__}: {item.skipped} samples skipped, "
                         f"{len(item.bad_shards)} unreadable shards")
        stack.extend(getattr(item, name, None) for name in ("data", "dataset"))
        stack.extend(getattr(item, "datasets", None) or [])
    return found

