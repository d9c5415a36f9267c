"""The options of `taming train`, written once: each field's metadata holds its command-line flags
and argparse settings, from which taming.cli.train builds the parser (`add_arguments`) and the list
of flags that take a value (`value_flags`). Short flags mean what they meant in the original main.py.
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from taming.config import ALLOW_IMPORT_HELP


def str2bool(v: str | bool) -> bool:
    if isinstance(v, bool):
        return v
    if v.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if v.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"boolean value expected, got {v!r}")


def flag(*flags: str, default: Any = None, factory: Any = None, **argparse_kwargs: Any) -> Any:
    """A dataclass field with its flags; a switch (`-t`, `-t true`) is `flag(..., switch=True)`."""
    if argparse_kwargs.pop("switch", False):
        argparse_kwargs.update(type=str2bool, nargs="?", const=True)
    metadata = {"flags": flags, "argparse": argparse_kwargs}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainOptions:
    """What `taming train` parsed; `overrides` are the trailing key.path=value items."""
    base: list[str] = flag("-b", "--base", factory=list, nargs="*", metavar="base_config.yaml",
                           help="config files, merged left to right; key.path=value items override them")
    train: bool = flag("-t", "--train", default=False, switch=True, help="train")
    name: str = flag("-n", "--name", default="", type=str, help="postfix for the run folder name")
    resume: str = flag("-r", "--resume", default="", type=str,
                       help="resume from a run folder or a checkpoint in it")
    seed: int = flag("-s", "--seed", default=23, type=int, help="seed for seed_everything")
    postfix: str = flag("-f", "--postfix", default="", type=str, help="postfix for the default run name")
    no_test: bool = flag("--no-test", default=False, switch=True, help="skip testing")
    project: str | None = flag("-p", "--project",
                               help="name of new or path to existing project (unused, as the original)")
    debug: bool = flag("-d", "--debug", default=False, switch=True, help="post-mortem debugging on an exception")
    logdir: str = flag("-l", "--logdir", default="logs", type=str, help="folder holding the run folders")
    gpus: str | None = flag("--gpus", type=str, help='GPU ids as the original, e.g. "0,1" or "0,"')
    accelerator: str | None = flag("--accelerator", type=str, help="cpu, gpu, auto, ...")
    devices: str | None = flag("--devices", type=str, help="device count or ids")
    num_nodes: int | None = flag("--num_nodes", type=int)
    strategy: str | None = flag("--strategy", type=str, help="ddp, fsdp, auto, ...")
    precision: str | None = flag("--precision", type=str,
                                 help="auto (bf16-mixed where bf16 is fast, else 32), 32, bf16-mixed, ...")
    max_steps: int | None = flag("--max_steps", type=int, help="stop after this many batches")
    allow_import: list[str] = flag("--allow-import", factory=list, action="append", metavar="PKG", help=ALLOW_IMPORT_HELP)
    overrides: list[str] = field(default_factory=list)


def _flagged() -> list:
    return [f for f in fields(TrainOptions) if "flags" in f.metadata]


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """One argument per flagged TrainOptions field, with the field's default."""
    for f in _flagged():
        default = f.default_factory() if f.default is MISSING else f.default
        parser.add_argument(*f.metadata["flags"], dest=f.name, default=default, **f.metadata["argparse"])
    return parser


def value_flags() -> set[str]:
    """Flags whose next token is their value, even when it looks like key=value."""
    return {name for f in _flagged() if "nargs" not in f.metadata["argparse"] for name in f.metadata["flags"]}


__all__ = ["TrainOptions", "add_arguments", "value_flags", "str2bool"]
