"""The three first-stage commands, of one shape: a model, input files or folders, an output folder.

    taming reconstruct -r RUN IMAGES_OR_DIRS... -o OUTDIR [--size S] [--precision P]   images -> reconstructions
    taming encode      -r RUN IMAGES_OR_DIRS... -o OUTDIR [--size S] [--precision P]   images -> codes (<stem>.npy)
    taming decode      -r RUN CODES.npy_OR_DIRS... -o OUTDIR [--precision P]           codes -> images (PNG)
RUN is a first-stage run or a transformer run (its first stage is used), ours or the original's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from taming.cli.errors import run_reporting_errors
from taming.cli.sampling_args import ModelOptions, Progress
from taming.flags import ArgumentParser, add_arguments
from taming.config import ConfigError
from taming.generation import first_stage as fs
from taming.generation.files import remove_partial
from taming.generation.runs import first_stage_run
from taming.precision import add_flag, prepare_first_stage

Job = Callable[..., int]


def build_parser(command: str, what: str, takes_size: bool) -> argparse.ArgumentParser:
    p = ArgumentParser(prog=f"taming {command}", description=what)
    add_arguments(p, ModelOptions)
    p.add_argument("inputs", nargs="+", help="files or folders")
    p.add_argument("-o", "--outdir", required=True, help="output folder")
    add_flag(p)
    if takes_size:
        p.add_argument("--size", type=int, default=None,
                       help="resize the smaller side to S and centre-crop S x S (default: keep the size, "
                            "cropped to a multiple of the downsampling factor)")
    return p


def main_for(command: str, what: str, suffixes: tuple[str, ...], job: Job, argv: list[str] | None,
             takes_size: bool = True) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def go() -> int:
        args = build_parser(command, what, takes_size).parse_args(argv)
        if takes_size and args.size is not None and args.size < 1:
            raise ConfigError(f"--size {args.size}: must be >= 1")
        files = fs.expand_inputs(args.inputs, suffixes)
        model, _ = first_stage_run(args.run, args.config, args.device)
        model = prepare_first_stage(model, args.precision)
        out = Path(args.outdir)
        remove_partial(out)
        progress = Progress(len(files), 0, command)
        try:
            extra = {"size": args.size} if takes_size else {}
            written = job(model, files, out, done=progress, **extra)
        finally:
            progress.close()
        print(f"{command}: {len(files)} input(s), {written} file(s) written to {out} "
              f"({progress.rate:.2f} inputs/s)")
        return 0

    return run_reporting_errors(command, go)


def reconstruct(argv: list[str] | None = None) -> int:
    return main_for("reconstruct", "Reconstruct images with a first stage (encode, quantize, decode).",
                    fs.IMAGE_SUFFIXES, fs.reconstruct, argv)


def encode(argv: list[str] | None = None) -> int:
    return main_for("encode", "Encode images into first-stage codes (.npy, (h, w) int64).", fs.IMAGE_SUFFIXES,
                    fs.encode, argv)


def decode(argv: list[str] | None = None) -> int:
    return main_for("decode", "Decode first-stage codes (.npy) into images.", (".npy",), fs.decode, argv,
                    takes_size=False)
