"""Output folders of sampling jobs.

Every image is written to a temporary name in its folder and renamed into place, so a killed job
leaves either a whole PNG or none; a rerun skips the names that exist (resume by skipping). Images
are written as they come and never collected in memory: the grid is read back from the first files.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from PIL import Image

from taming.images import channels_first, make_grid

GRID_IMAGES = 64  # the grid shows at most this many samples
GRID_ROW = 8


def image_name(index: int) -> str:
    """Stable file name of sample `index`: 000123.png."""
    return f"{index:06d}.png"


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1], C in {1, 3} -> (B, H, W, 3) uint8 (the pixels written and scored)."""
    images = images.detach().float().clamp(-1, 1).cpu()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return ((images + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _atomic_write(path: Path, write: Any) -> Path:
    """write(file object) into a temporary file beside `path`, then rename it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_png(pixels: np.ndarray, path: str | Path) -> Path:
    """(H, W, 3) uint8 -> PNG at `path`, atomically."""
    return _atomic_write(Path(path), lambda f: Image.fromarray(pixels).save(f, format="PNG"))


def save_npy(array: np.ndarray, path: str | Path) -> Path:
    return _atomic_write(Path(path), lambda f: np.save(f, array))


def save_json(data: Mapping[str, Any], path: str | Path) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    return _atomic_write(Path(path), lambda f: f.write(text.encode()))


def remove_partial(folder: str | Path) -> int:
    """Delete temporary files a killed job left in `folder` (and below); -> how many."""
    parts = list(Path(folder).rglob(".*.part")) if Path(folder).is_dir() else []
    for part in parts:
        part.unlink(missing_ok=True)
    return len(parts)


def grid_of_files(paths: Iterable[Path], out: str | Path, nrow: int = GRID_ROW) -> Path | None:
    """Tile the images of `paths` (same size) into one PNG at `out`; None when there are none."""
    pictures = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    if not pictures:
        return None
    images = channels_first(np.stack(pictures)) / 127.5 - 1  # exact for uint8
    return save_png(make_grid(images, nrow=nrow), out)
