"""Sample batches as OpenAI's ADM evaluation suite reads them (guided-diffusion's evaluations/evaluator.py):
an .npz whose `arr_0` is uint8 (N, H, W, 3) and, for class-conditional samples, `arr_1` the labels (N,).

Written image by image into an uncompressed zip member (50,000 images of 256 px are 9.8 GB: never
held in memory), to a temporary name renamed into place. Read back memory-mapped when the member is
stored uncompressed (np.savez and this writer), else loaded whole (np.savez_compressed).
"""
from __future__ import annotations

import io
import os
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from taming.data.errors import DataError
from taming.data.imageio import read_rgb

IMAGES, LABELS = "arr_0", "arr_1"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip entry times: the same samples give the same file bytes


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = zipfile.ZIP_STORED
    return info


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_2_0(buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                  "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def write_images(path: str | os.PathLike, files: Sequence[Path], labels: Sequence[int] | None = None) -> Path:
    """The images of `files` (one size), in that order, as arr_0; `labels` as arr_1 (int64)."""
    path = Path(path)
    if not files:
        raise DataError(f"{path}: no images to write")
    first = read_rgb(files[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open(_entry(f"{IMAGES}.npy"), "w", force_zip64=True) as f:
                f.write(_npy_header((len(files), *first.shape), np.uint8))
                for file in files:
                    image = read_rgb(file)
                    if image.shape != first.shape:
                        raise DataError(f"{file}: {image.shape[1]}x{image.shape[0]} px, the others are "
                                        f"{first.shape[1]}x{first.shape[0]}: an .npz batch holds one size")
                    f.write(np.ascontiguousarray(image).tobytes())
            if labels is not None:
                array = np.asarray(labels, dtype=np.int64)
                zf.writestr(_entry(f"{LABELS}.npy"), _npy_header(array.shape, array.dtype) + array.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def members(path: str | os.PathLike) -> set[str]:
    """The array names of an .npz ("arr_0", "mu", ...); DataError when it is no readable .npz."""
    try:
        with zipfile.ZipFile(path) as zf:
            return {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz ({exc})") from None


def holds_images(path: str | os.PathLike) -> bool:
    return Path(path).is_file() and IMAGES in members(path)


def _mapped(path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    """The stored (uncompressed) member `info` of the zip at `path` as a read-only memory map."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the local file header: its name and extra field lengths end it
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(f))
        offset = f.tell()
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def read_images(path: str | os.PathLike) -> np.ndarray:
    """arr_0 of an ADM batch: uint8 (N, H, W, 3), memory-mapped where it can be."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(f"{IMAGES}.npy")
        images = _mapped(path, info) if info.compress_type == zipfile.ZIP_STORED else np.load(path)[IMAGES]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read {IMAGES} (ADM's uint8 (N, H, W, 3) images): {exc}") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or not len(images):
        raise DataError(f"{path}: {IMAGES} is {images.dtype} {images.shape}, not uint8 (N, H, W, 3) images")
    return images


def read_labels(path: str | os.PathLike) -> np.ndarray | None:
    if LABELS not in members(path):
        return None
    with np.load(path, allow_pickle=False) as data:
        return data[LABELS]


__all__ = ["write_images", "read_images", "read_labels", "holds_images", "members", "IMAGES", "LABELS"]
