"""`taming sample-window`: one large image from a segmentation or depth map of any size (e.g. a
1024x256 panorama) with a model trained on small crops, through the sliding attention window.

    taming sample-window -r RUN --condition MAP.png -o OUT.png [options]   (SampleWindowOptions)
                         [--image PHOTO.png --keep-rows R]   (completion: PHOTO's top R code rows kept)
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from taming.cli.errors import run_reporting_errors
from taming.cli.sampling_args import ModelOptions, Progress, SamplingOptions, top_k_flag
from taming.flags import ArgumentParser, add_arguments, flag, from_namespace
from taming.config import ConfigError
from taming.generation.runs import transformer_run
from taming.precision import prepare_first_stage, resolve
from taming.generation.window import parse_size, sample_map


@dataclass
class SampleWindowOptions(SamplingOptions, ModelOptions):
    """What `taming sample-window` parsed."""
    top_k: int | None = top_k_flag(100)
    condition: str = flag("--condition", "-c", required=True, help="the map: a class-index PNG (segmentation), a "
                          "depth PNG, or an image (image-conditioned models)")
    size: str | None = flag("--size", help="output size WIDTHxHEIGHT in pixels (default: the map's)")
    fast: bool = flag("--fast", default=False, action="store_true",
                      help="move the window a quarter of its side at a time")
    out: str = flag("-o", "--out", required=True, help="output PNG")
    animation: str | None = flag("--animation", help="also write the sampling as an animated GIF")
    frames: int = flag("--frames", default=24, type=int, help="frames of the animation (default 24)")
    image: str | None = flag("--image", help="completion: the image to complete, resized to the output size")
    keep_rows: int = flag("--keep-rows", default=0, type=int,
                          help="completion: keep the top rows of --image's codes, sample the rest (default 0)")


def parse(argv: list[str]) -> SampleWindowOptions:
    return from_namespace(SampleWindowOptions, build_parser().parse_args(argv))


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(ArgumentParser(prog="taming sample-window", description="Sample one large image from a "
                                        "conditioning map."), SampleWindowOptions)


def run(args: SampleWindowOptions) -> tuple[int, int]:
    if args.frames < 1:
        raise ConfigError(f"--frames {args.frames}: must be >= 1")
    if args.keep_rows < 0 or (args.keep_rows == 0) != (args.image is None):
        raise ConfigError(f"--keep-rows {args.keep_rows}, --image {args.image}: completion takes both, "
                          "--keep-rows >= 1 and the image to complete")
    if not Path(args.condition).is_file():
        raise FileNotFoundError(f"condition map not found: {args.condition}")
    if args.image is not None and not Path(args.image).is_file():
        raise FileNotFoundError(f"image to complete not found: {args.image}")
    loaded = transformer_run(args.run, args.config, args.device, "`taming sample-window`")
    precision = resolve(args.precision, loaded.device)
    settings = args.spec(precision.name, fast=args.fast, keep_rows=args.keep_rows)
    prepare_first_stage(loaded.model.first_stage_model, precision)
    size = parse_size(args.size)
    f = loaded.factor
    total = (size[0] // f) * (size[1] // f) if size else None
    progress = Progress(total, 0, "sampling", unit="codes")
    try:
        w, h = sample_map(loaded, args.condition, size, settings, Path(args.out),
                          Path(args.animation) if args.animation else None, args.frames, progress.fraction,
                          args.image)
    finally:
        progress.close()
    print(f"{w}x{h} px ({w // f}x{h // f} codes, window {loaded.window[1]}x{loaded.window[0]}) written to {args.out}"
          + (f", animation {args.animation}" if args.animation else ""))
    return w, h


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_reporting_errors("sample-window", lambda: run(parse(argv)) and 0)
