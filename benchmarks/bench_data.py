"""Data pipeline throughput: procedural landscapes, file datasets, WebDataset and code shards.

    .venv/bin/python benchmarks/bench_data.py [--quick]

Prints one table: per-sample wall time in the main process (no DataLoader), samples/s, and CPU
time per sample (steadier when other jobs share the machine).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from taming.data.codes import CodeDataset, CodeShards, write_code_arrays, write_code_shards  # noqa: E402
from taming.data.landscapes import ProceduralLandscapes  # noqa: E402
from taming.data.webdataset import WebImages, write_image_shards  # noqa: E402


def timed(fn, n: int) -> tuple[float, float]:
    """(median wall seconds, mean CPU seconds) per call over n calls, after one warm-up. CPU time
    is the steadier number on a shared machine."""
    fn(0)
    times = []
    cpu = time.process_time()
    for i in range(n):
        start = time.perf_counter()
        fn(i + 1)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), (time.process_time() - cpu) / n


def timed_iter(iterable, n: int) -> tuple[float, float]:
    """(wall, CPU) seconds per item over the first n items of an iterable (after the first)."""
    it = iter(iterable)
    next(it)
    start, cpu = time.perf_counter(), time.process_time()
    count = 0
    for _ in it:
        count += 1
        if count >= n:
            break
    count = max(count, 1)
    return (time.perf_counter() - start) / count, (time.process_time() - cpu) / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from taming.precision import summary

    print(summary())  # what was detected and what precision="auto" chooses
    n = 10 if args.quick else 50
    rows = []
    for h, w in ((64, 64), (128, 128), (256, 256), (256, 512), (512, 512)):
        data = ProceduralLandscapes(height=h, width=w, length=10 ** 6)
        rows.append((f"landscapes render {h}x{w}", timed(data.render, n)))
        if (h, w) == (256, 256):
            rows.append((f"landscapes example {h}x{w} (+one-hot)", timed(data.__getitem__, n)))
    sflckr = SHARED / "data" / "sflckr"
    if sflckr.is_dir():
        from taming.data.sflckr import Examples
        from taming.data.drin import DRINExamples
        seg = Examples(size=256, root=str(sflckr))
        rows.append(("S-FLCKR example 256 (jpg+png, one-hot 182)", timed(lambda i: seg[i % len(seg)], min(n, 25))))
        drin = DRINExamples(size=256, root=str(SHARED / "data" / "drin"))
        rows.append(("D-RIN example 256 (jpg + packed depth)", timed(lambda i: drin[i % len(drin)], min(n, 25))))
    with tempfile.TemporaryDirectory() as tmp:
        source = ProceduralLandscapes(size=256, length=64)
        items = ({"image": rgb, "segmentation": labels} for rgb, labels in (source.render(i) for i in range(64)))
        write_image_shards(f"{tmp}/img-%02d.tar", items, maxcount=16)
        stream = WebImages(f"{tmp}/img-{{00..03}}.tar", size=256, n_labels=8, shuffle=16)
        rows.append(("WebImages 256 png+seg (one process)", timed_iter(stream, 60)))
        rng = np.random.default_rng(0)
        count = 2000 if args.quick else 20000
        z = rng.integers(0, 1024, (count, 16, 16))
        write_code_shards(f"{tmp}/codes-%02d.tar", ({"z": z[i]} for i in range(count)), maxcount=5000)
        shards = CodeShards(f"{tmp}/codes-{{00..{(count - 1) // 5000:02d}}}.tar", shuffle=1000)
        rows.append(("CodeShards 16x16 (one process)", timed_iter(shards, count - 1)))
        write_code_arrays(f"{tmp}/arrays", z)
        arrays = CodeDataset(f"{tmp}/arrays")
        rows.append(("CodeDataset 16x16 (memory-mapped)", timed(lambda i: arrays[i % count], 1000)))
    width = max(len(name) for name, _ in rows)
    print(f"{'pipeline':<{width}}  {'ms/sample':>10}  {'samples/s':>10}  {'cpu ms/sample':>13}")
    for name, (seconds, cpu) in rows:
        print(f"{name:<{width}}  {seconds * 1000:>10.3f}  {1 / seconds:>10.0f}  {cpu * 1000:>13.3f}")


if __name__ == "__main__":
    main()
