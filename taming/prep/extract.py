"""The loop behind `taming extract-depth` / `extract-segmentation`: read images (DataLoader workers),
prepare each on the device, batch those of one network input shape, run, write each map atomically.

Resumable: a map that exists is skipped (maps are written to a temporary name and renamed, so an
existing one is whole; temporaries of a killed run are removed at the start). An image that cannot
be read is reported by name and skipped; the others go on.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from taming.data.errors import UnreadableFile
from taming.data.imageio import read_rgb
from taming.prep.inputs import Item
from taming.prep.maps import MapMaker
from taming.precision import resolve

PRECISIONS = ("auto", "fp32", "bf16")


def compute_dtype(precision: str, device: torch.device | str) -> torch.dtype:
    """The one place the extraction's precision is decided. "auto" is the project's choice for
    convolution networks on `device` (taming.precision: bf16 where bf16 convolutions are fast, else
    float32); "fp32" computes what the reference computes."""
    if precision == "auto":
        return torch.bfloat16 if resolve("auto", device).first_stage == "bf16" else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]


def resolve_device(device: str) -> torch.device:
    """"auto" (the first GPU if there is one), "cpu", "cuda", "cuda:1", ...; ValueError for one not here."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device}: not a device (auto, cpu, cuda, cuda:1, ...)") from None
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: no such GPU here (torch sees {torch.cuda.device_count()}); "
                         "use --device cpu")
    return resolved


@dataclass
class Report:
    written: int = 0
    existing: int = 0  # skipped: already there
    unreadable: list[str] = field(default_factory=list)  # "path (reason)"
    seconds: float = 0.0

    def summary(self, out: Path) -> str:
        line = f"{self.written} maps written to {out}, {self.existing} already there"
        if self.written:
            line += f", {self.seconds / self.written:.2f} s per image"
        if self.unreadable:
            line += f"; {len(self.unreadable)} unreadable images skipped: " + "; ".join(self.unreadable[:10])
        return line


class _Images(Dataset):
    def __init__(self, items: Sequence[Item]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        try:
            return i, read_rgb(self.items[i].image), ""
        except UnreadableFile as error:
            return i, None, f"{error.path} ({error.reason})"


def _identity(x):
    return x


def extract(maker: MapMaker, items: Sequence[Item], out: str | Path, batch_size: int = 4, workers: int = 1,
            progress: bool = True, max_pending: int | None = None) -> Report:
    """Maps of `items` under `out` (see the module docstring)."""
    from tqdm import tqdm

    from taming.generation.files import remove_partial

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_partial(out)
    report = Report()
    todo = [item for item in items if not (out / item.out).is_file()]
    report.existing = len(items) - len(todo)
    max_pending = max_pending or 4 * batch_size
    buckets: dict[tuple, list] = defaultdict(list)  # network input shape -> [(item, (H, W), input)]
    bar = tqdm(total=len(todo), desc=f"{maker.kind} maps", unit="image", disable=not progress)
    start = time.perf_counter()

    def flush(shape: tuple) -> None:
        pending = buckets.pop(shape)
        outputs = maker.run(torch.stack([x for _, _, x in pending]))
        for (item, size, _), output in zip(pending, outputs):
            maker.write(maker.finish(output, size), out / item.out)
            report.written += 1
            bar.update(1)

    loader = DataLoader(_Images(todo), batch_size=None, shuffle=False, num_workers=workers,
                        collate_fn=_identity, prefetch_factor=2 if workers else None)
    for index, image, problem in loader:
        if image is None:
            report.unreadable.append(problem)
            bar.update(1)
            continue
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].to(maker.device)
        x = maker.prepare(pixels)
        buckets[tuple(x.shape)].append((todo[index], tuple(image.shape[:2]), x))
        if len(buckets[tuple(x.shape)]) >= batch_size:
            flush(tuple(x.shape))
        elif sum(map(len, buckets.values())) > max_pending:  # many sizes: run the fullest, keep memory bounded
            flush(max(buckets, key=lambda k: len(buckets[k])))
    for shape in list(buckets):
        flush(shape)
    bar.close()
    report.seconds = time.perf_counter() - start
    return report
