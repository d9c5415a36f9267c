"""Time per image of `taming extract-depth` (MiDaS v2.1) and `taming extract-segmentation` (DeepLab v2
MSC) with the real-size networks (random weights: the time does not depend on them).

    .venv/bin/python benchmarks/bench_prep.py [--threads 2] [--repeat 3] [--precision fp32 bf16]

Prints one table: network, image size, the size the network sees, precision, median wall seconds per
image and CPU seconds per image (steadier when other jobs share the machine), batch 1 (sizes differ
between photos). The time of one image is the network's: reading and writing a PNG are milliseconds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from taming.hardware import summary  # noqa: E402
from taming.prep import deeplab, midas  # noqa: E402
from taming.prep.extract import compute_dtype  # noqa: E402
from taming.prep.maps import DepthMaker, SegmentationMaker  # noqa: E402

CASES = [  # (maker, network, (H, W) of the photo, what it is)
    (DepthMaker, midas.MidasNet, (375, 500), "ImageNet photo (D-RIN)"),
    (SegmentationMaker, deeplab.deeplab_v2_msc, (375, 500), "ImageNet-size photo"),
    (SegmentationMaker, deeplab.deeplab_v2_msc, (683, 1024), "S-FLCKR photo (Flickr _b)"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--precision", nargs="+", default=["fp32", "auto"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(summary("cpu"))
    print(f"threads {torch.get_num_threads()}, batch 1, {args.repeat} images after one warm-up")
    print(f"{'network':<24} {'photo':<10} {'network sees':<13} {'precision':<16} {'wall s/img':>10} {'CPU s/img':>10}")
    for maker_cls, build, size, _ in CASES:
        net = build().eval()
        for precision in args.precision:
            dtype = compute_dtype(precision, "cpu")
            maker = maker_cls(net, "cpu", dtype)
            image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, *size), dtype=np.uint8))
            seen = tuple(maker.prepare(image).shape[-2:])
            maker(image)
            walls, cpu = [], time.process_time()
            for _ in range(args.repeat):
                start = time.perf_counter()
                maker(image)
                walls.append(time.perf_counter() - start)
            cpu = (time.process_time() - cpu) / args.repeat
            name = "MiDaS v2.1" if maker_cls is DepthMaker else "DeepLab v2 MSC"
            label = f"{precision}" + (f" ({str(dtype).replace('torch.', '')})" if precision == "auto" else "")
            photo, sees = f"{size[1]}x{size[0]}", f"{seen[1]}x{seen[0]}"
            print(f"{name:<24} {photo:<10} {sees:<13} {label:<16} "
                  f"{float(np.median(walls)):>10.2f} {cpu:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
