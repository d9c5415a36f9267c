"""`taming sample-window`: one large image from a segmentation or depth map of any size (e.g. a
1024x256 panorama) with a model trained on small crops, through the sliding attention window.

    taming sample-window -r RUN --condition MAP.png [--size WxH] -o OUT.png [--animation OUT.gif]
                         [--frames N] [--fast] [--top-k K] [--top-p P] [--temperature T] [--seed S]
                         [--precision auto|fp32|bf16|int8]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taming.cli.errors import run_reporting_errors
from taming.cli.sampling_args import Progress, add_model_args, add_sampling_args, sample_settings
from taming.cli.train import ArgumentParser
from taming.config import ConfigError
from taming.generation.models import transformer_run
from taming.precision import prepare_first_stage, resolve
from taming.generation.window import parse_size, sample_map


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="taming sample-window", description="Sample one large image from a conditioning map.")
    add_model_args(p)
    p.add_argument("--condition", "-c", required=True,
                   help="the map: a class-index PNG (segmentation), a depth PNG, or an image (image-conditioned models)")
    p.add_argument("--size", default=None, help="output size WIDTHxHEIGHT in pixels (default: the map's)")
    add_sampling_args(p, top_k=100)
    p.add_argument("--fast", action="store_true", help="move the window a quarter of its side at a time")
    p.add_argument("-o", "--out", required=True, help="output PNG")
    p.add_argument("--animation", default=None, help="also write the sampling as an animated GIF")
    p.add_argument("--frames", type=int, default=24, help="frames of the animation (default 24)")
    return p


def run(args: argparse.Namespace) -> tuple[int, int]:
    if args.frames < 1:
        raise ConfigError(f"--frames {args.frames}: must be >= 1")
    if not Path(args.condition).is_file():
        raise FileNotFoundError(f"condition map not found: {args.condition}")
    loaded = transformer_run(args.run, args.config, args.device, "`taming sample-window`")
    precision = resolve(args.precision, loaded.device)
    settings = sample_settings(args, precision.name)
    prepare_first_stage(loaded.model.first_stage_model, precision)
    size = parse_size(args.size)
    f = loaded.factor
    total = (size[0] // f) * (size[1] // f) if size else None
    progress = Progress(total, 0, "sampling", unit="codes")
    try:
        w, h = sample_map(loaded, args.condition, size, settings, args.seed, Path(args.out), args.fast,
                          Path(args.animation) if args.animation else None, args.frames, progress)
    finally:
        progress.close()
    print(f"{w}x{h} px ({w // f}x{h // f} codes, window {loaded.window[1]}x{loaded.window[0]}) written to {args.out}"
          + (f", animation {args.animation}" if args.animation else ""))
    return w, h


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_reporting_errors("sample-window", lambda: run(build_parser().parse_args(argv)) and 0)
