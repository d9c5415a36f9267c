"""`taming train`: the original main.py command line.

    taming train -b CONFIG.yaml [more.yaml ...] -t [-n NAME | -r LOGDIR_OR_CKPT] [-s SEED] [-f POSTFIX]
                 [--no-test] [--gpus 0,1] [--accelerator A] [--devices D] [--num_nodes N]
                 [--strategy ddp|fsdp] [--precision P] [--max_steps N] [-l LOGDIR] [key.path=value ...]

Short flags mean what they meant in the original: -b base configs (merged left to right), -t train,
-r resume, -n name, -s seed (default 23), -f postfix, -p project (accepted, unused as in the original),
-d debug (drop into pdb on an exception). Trailing `key.path=value` items override the config.
"""
from __future__ import annotations

import argparse
import sys

from taming.cli.errors import run_reporting_errors
from taming.config import ConfigError
from taming.flags import ArgumentParser, split_overrides
from taming.training.options import TrainOptions, add_arguments, value_flags


VALUE_OPTIONS = value_flags()  # options whose next token is their value, even when it looks like key=value


def build_parser() -> argparse.ArgumentParser:
    """Generated from the TrainOptions fields (taming/training/options.py)."""
    return add_arguments(ArgumentParser(prog="taming train", description="Train a first-stage or transformer model."))


def parse_args(argv: list[str]):
    """(TrainOptions, parser); unknown `--flags` are an error, `key=value` items become overrides."""
    parser = build_parser()
    flags, overrides = split_overrides(argv, VALUE_OPTIONS)
    ns, unknown = parser.parse_known_args(flags)
    for item in unknown:
        raise ConfigError(f"unrecognized argument {item!r} (config overrides are written key.path=value)")
    opts = TrainOptions(**vars(ns), overrides=overrides)
    return opts, parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def go() -> int:
        opts, _ = parse_args(argv)
        from taming.training.trainer import run

        try:
            run(opts)
        except Exception:
            if opts.debug:
                import pdb
                pdb.post_mortem()
            raise
        return 0

    return run_reporting_errors("train", go)
