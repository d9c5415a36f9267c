"""Typed options, flags generated: a command's options are a dataclass whose fields carry their
command-line flags (`flag(...)`); `add_arguments` builds the argparse arguments from it and `parse`
builds the dataclass back from what was parsed. A field whose type is another options dataclass
(`group(Cls)`) adds that dataclass's flags too, and so does a base class (flat fields: `opts.seed`),
so a set of flags shared by several commands is written once; `added(helper)` is a field whose flag
an existing helper adds (--precision, --allow-import). Written once for `taming train` and the commands.
Float flags are checked as they are parsed (`number_in`: finite, in the range that means something), so
`--temperature nan` is refused before anything loads and never reaches a settings.json.
"""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import MISSING, field, fields
from typing import Any, Callable, Sequence, TypeVar

from taming.config import ConfigError

T = TypeVar("T")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ConfigError (one line, exit 2 in main) instead of printing usage."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see taming {self.prog.split()[-1]} --help)")


def number_in(low: float | None = None, high: float | None = None, low_open: bool = False) -> Callable[[str], float]:
    """An argparse `type`: a finite float >= low (> low when low_open) and <= high."""
    parts = [f"{'>' if low_open else '>='} {low:g}" if low is not None else "", f"<= {high:g}" if high is not None else ""]
    wanted = "a finite number" + (" " + " and ".join(p for p in parts if p) if any(parts) else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        below = low is not None and (value <= low if low_open else value < low)
        if not math.isfinite(value) or below or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    return parse


POSITIVE = number_in(0, low_open=True)  # temperatures, scales of step counts
PROBABILITY = number_in(0, 1, low_open=True)  # top-p, the fraction of candidates kept
NON_NEGATIVE = number_in(0)  # classifier-free guidance scale


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


def added(adder: Callable[[argparse.ArgumentParser], None] | None, default: Any = None, factory: Any = None) -> Any:
    """A field whose flag an existing helper adds (e.g. taming.precision.add_flag): one definition. A helper
    that adds several flags is named on the first of their fields; the others pass None."""
    metadata = {"adder": adder}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def group(cls: type) -> Any:
    """A field holding another options dataclass: its flags join the command's."""
    return field(default_factory=cls, metadata={"group": cls})


def _flagged(cls: type) -> list:
    return [f for f in fields(cls) if "flags" in f.metadata or "adder" in f.metadata]


def _groups(cls: type) -> list:
    return [f for f in fields(cls) if "group" in f.metadata]


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> argparse.ArgumentParser:
    """One argument per flagged field of `cls` (and of its groups), with the field's default."""
    for f in _flagged(cls):
        if "adder" in f.metadata:
            if f.metadata["adder"] is not None:
                f.metadata["adder"](parser)
            continue
        default = f.default_factory() if f.default is MISSING else f.default
        parser.add_argument(*f.metadata["flags"], dest=f.name, default=default, **f.metadata["argparse"])
    for f in _groups(cls):
        add_arguments(parser, f.metadata["group"])
    return parser


def value_flags(cls: type) -> set[str]:
    """Flags whose next token is their value, even when it looks like key=value."""
    own = {name for f in _flagged(cls) if "flags" in f.metadata and "nargs" not in f.metadata["argparse"]
           for name in f.metadata["flags"]}
    return own.union(*(value_flags(f.metadata["group"]) for f in _groups(cls)))


OVERRIDE = re.compile(r"^[A-Za-z_][\w\-]*(\.[\w\-]+)*=")


def split_overrides(argv: Sequence[str], value_options: set[str]) -> tuple[list[str], list[str]]:
    """Take `key.path=value` items out first, so `-b a.yaml x.y=1` does not read x.y=1 as a config file;
    the item after a flag of `value_options` is that flag's value, even when it looks like key=value."""
    flags, overrides = [], []
    for i, item in enumerate(argv):
        if OVERRIDE.match(item) and not (i and argv[i - 1] in value_options):
            overrides.append(item)
        else:
            flags.append(item)
    return flags, overrides


def parser_value_flags(parser: argparse.ArgumentParser) -> set[str]:
    """The flags of a parser that take exactly one value."""
    return {s for a in parser._actions if a.option_strings and a.nargs is None and a.const is None
            for s in a.option_strings}


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
