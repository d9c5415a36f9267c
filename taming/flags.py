"""Typed options, flags generated: a command's options are a dataclass whose fields carry their
command-line flags (`flag(...)`); `add_arguments` builds the argparse arguments from it and `parse`
builds the dataclass back from what was parsed. A field whose type is another options dataclass
(`group(Cls)`) adds that dataclass's flags too, so a set of flags shared by several commands is
written once and arrives as one typed value. Written once for `taming train` and the commands.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import MISSING, field, fields
from typing import Any, Sequence, TypeVar

from taming.config import ConfigError

T = TypeVar("T")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ConfigError (one line, exit 2 in main) instead of printing usage."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see taming {self.prog.split()[-1]} --help)")


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


def group(cls: type) -> Any:
    """A field holding another options dataclass: its flags join the command's."""
    return field(default_factory=cls, metadata={"group": cls})


def _flagged(cls: type) -> list:
    return [f for f in fields(cls) if "flags" in f.metadata]


def _groups(cls: type) -> list:
    return [f for f in fields(cls) if "group" in f.metadata]


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> argparse.ArgumentParser:
    """One argument per flagged field of `cls` (and of its groups), with the field's default."""
    for f in _flagged(cls):
        default = f.default_factory() if f.default is MISSING else f.default
        parser.add_argument(*f.metadata["flags"], dest=f.name, default=default, **f.metadata["argparse"])
    for f in _groups(cls):
        add_arguments(parser, f.metadata["group"])
    return parser


def value_flags(cls: type) -> set[str]:
    """Flags whose next token is their value, even when it looks like key=value."""
    own = {name for f in _flagged(cls) if "nargs" not in f.metadata["argparse"] for name in f.metadata["flags"]}
    return own.union(*(value_flags(f.metadata["group"]) for f in _groups(cls)))


def from_namespace(cls: type[T], ns: argparse.Namespace, **given: Any) -> T:
    """The options dataclass of what was parsed (flags of other arguments are left aside)."""
    values = vars(ns)
    kwargs = {f.name: values[f.name] for f in _flagged(cls) if f.name in values}
    kwargs |= {f.name: from_namespace(f.metadata["group"], ns) for f in _groups(cls)}
    return cls(**kwargs, **given)


def parse(cls: type[T], argv: Sequence[str], prog: str, description: str) -> T:
    """Parse `argv` with the flags of `cls` -> its options."""
    parser = add_arguments(ArgumentParser(prog=prog, description=description), cls)
    return from_namespace(cls, parser.parse_args(list(argv)))


def as_dict(options: Any) -> dict[str, Any]:
    return dataclasses.asdict(options)
