"""The options of `taming train`, written once: each field's metadata holds its command-line flags
and argparse settings (taming.flags), from which taming.cli.train builds the parser (`add_arguments`)
and the list of flags that take a value (`value_flags`). Short flags mean what they meant in the original main.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from taming.config import ALLOW_IMPORT_HELP
from taming import flags
from taming.flags import flag, str2bool  # noqa: F401 - str2bool: part of this module's names


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


def add_arguments(parser):
    """One argument per flagged TrainOptions field, with the field's default."""
    return flags.add_arguments(parser, TrainOptions)


def value_flags() -> set[str]:
    """Flags whose next token is their value, even when it looks like key=value."""
    return flags.value_flags(TrainOptions)


__all__ = ["TrainOptions", "add_arguments", "value_flags", "str2bool"]
