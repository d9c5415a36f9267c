"""`taming train`: the original main.py command line.

    taming train -b CONFIG.yaml [more.yaml ...] -t [-n NAME | -r LOGDIR_OR_CKPT] [-s SEED] [-f POSTFIX]
                 [--no-test] [--gpus 0,1] [--accelerator A] [--devices D] [--num_nodes N]
                 [--strategy ddp|fsdp] [--precision P] [--max_steps N] [-l LOGDIR] [--allow-import PKG]
                 [key.path=value ...]

Short flags mean what they meant in the original: -b base configs (merged left to right), -t train,
-r resume, -n name, -s seed (default 23), -f postfix, -p project (accepted, unused as in the original),
-d debug (drop into pdb on an exception). Trailing `key.path=value` items override the config.
"""
from __future__ import annotations

import argparse
import re
import sys

from taming.cli.allow import add_allow_import
from taming.cli.errors import run_reporting_errors
from taming.config import ConfigError


def str2bool(v: str | bool) -> bool:
    if isinstance(v, bool):
        return v
    if v.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if v.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"boolean value expected, got {v!r}")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ConfigError (one line, exit 2 in main) instead of printing usage."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see taming {self.prog.split()[-1]} --help)")


OVERRIDE = re.compile(r"^[A-Za-z_][\w\-]*(\.[\w\-]+)*=")
# Options whose next token is their value, even when it looks like key=value.
VALUE_OPTIONS = {"-n", "--name", "-r", "--resume", "-p", "--project", "-s", "--seed", "-f", "--postfix",
                 "-l", "--logdir", "--gpus", "--accelerator", "--devices", "--num_nodes", "--strategy",
                 "--precision", "--max_steps", "--allow-import"}


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Take `key.path=value` items out first, so `-b a.yaml x.y=1` does not read x.y=1 as a config file."""
    flags, overrides = [], []
    for i, item in enumerate(argv):
        if OVERRIDE.match(item) and not (i and argv[i - 1] in VALUE_OPTIONS):
            overrides.append(item)
        else:
            flags.append(item)
    return flags, overrides


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="taming train", description="Train a first-stage or transformer model.")
    p.add_argument("-n", "--name", type=str, default="", help="postfix for the run folder name")
    p.add_argument("-r", "--resume", type=str, default="", help="resume from a run folder or a checkpoint in it")
    p.add_argument("-b", "--base", nargs="*", metavar="base_config.yaml", default=[],
                   help="config files, merged left to right; key.path=value items override them")
    p.add_argument("-t", "--train", type=str2bool, const=True, default=False, nargs="?", help="train")
    p.add_argument("--no-test", type=str2bool, const=True, default=False, nargs="?", help="skip testing")
    p.add_argument("-p", "--project", help="name of new or path to existing project (unused, as the original)")
    p.add_argument("-d", "--debug", type=str2bool, nargs="?", const=True, default=False,
                   help="post-mortem debugging on an exception")
    p.add_argument("-s", "--seed", type=int, default=23, help="seed for seed_everything")
    p.add_argument("-f", "--postfix", type=str, default="", help="postfix for the default run name")
    p.add_argument("-l", "--logdir", type=str, default="logs", help="folder holding the run folders")
    p.add_argument("--gpus", type=str, default=None, help='GPU ids as the original, e.g. "0,1" or "0,"')
    p.add_argument("--accelerator", type=str, default=None, help="cpu, gpu, auto, ...")
    p.add_argument("--devices", type=str, default=None, help="device count or ids")
    p.add_argument("--num_nodes", type=int, default=None)
    p.add_argument("--strategy", type=str, default=None, help="ddp, fsdp, auto, ...")
    p.add_argument("--precision", type=str, default=None, help="32, bf16-mixed, 16-mixed, ...")
    p.add_argument("--max_steps", type=int, default=None, help="stop after this many batches")
    add_allow_import(p)
    return p


def parse_args(argv: list[str]):
    """(TrainOptions, parser); unknown `--flags` are an error, `key=value` items become overrides."""
    from taming.training.trainer import TrainOptions

    parser = build_parser()
    flags, overrides = split_overrides(argv)
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

        if not opts.debug:
            run(opts)
            return 0
        try:
            run(opts)
        except Exception:
            import pdb
            pdb.post_mortem()
            raise
        return 0

    return run_reporting_errors("train", go)
