"""Config values checked against the type hints of the constructor they feed.

`check_value(value, hint, where, error)` understands the hints our constructors use: int, float, bool,
str, paths, None, unions, Literal, sequences, tuples, mappings and TypedDicts (a nested settings
dict that is not a `target:` node, e.g. `ddconfig`). A TypedDict may carry a `__check__(value,
where)` function for rules across its keys. Hints it does not know (classes, callables) pass:
config values are plain YAML data, and code may hand any object through `**extra`.

A float must be finite (YAML's .nan and .inf are no setting anyone means), and
`Annotated[int, Between(lo, hi)]` bounds a value: sizes (channels, codebook entries, layers) are
checked before anything is allocated, so 0, -1 or 10**12 is one line naming the key, not a
traceback from deep inside torch or an allocation of a terabyte.

Messages name the key path and what was expected: `model.params.ddconfig.ch: expected int, got str 'abc'`.
"""
from __future__ import annotations

import collections.abc as abc
import difflib
import inspect
import math
import os
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Iterable, Literal, Union

_SEQUENCES = (list, tuple, abc.Sequence, abc.Iterable, abc.Collection, abc.MutableSequence)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)


@dataclass(frozen=True)
class Between:
    """`Annotated[int, Between(1, 8192)]`: the value must lie in [lo, hi] (None: no bound that side)."""
    lo: float | None = None
    hi: float | None = None

    def problem(self, value: Any, where: str) -> str | None:
        if (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi):
            return None
        if self.hi is None:
            return f"{where}: must be >= {self.lo}, got {value}"
        if self.lo is None:
            return f"{where}: must be <= {self.hi}, got {value}"
        return f"{where}: must be between {self.lo} and {self.hi}, got {value}"


MAX_WIDTH = 8192  # channels of one layer: far above any trained model's, far below an allocation that fails
Width = Annotated[int, Between(1, MAX_WIDTH)]


def type_hints(fn: Callable) -> dict[str, Any]:
    """Evaluated hints of fn's parameters; one that cannot be evaluated is left out (checked by nothing)."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # one unresolvable forward reference: evaluate the others one by one
        pass
    hints = {}
    namespace = getattr(fn, "__globals__", {})
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # written in C: nothing to check against
        return {}
    for name, p in parameters.items():
        ann = p.annotation
        if isinstance(ann, str):
            try:
                ann = eval(ann, dict(namespace))  # noqa: S307 - our own source's annotations, not user input
            except Exception:
                continue
        if ann is not inspect.Parameter.empty:
            hints[name] = ann
    return hints


def describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return describe(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in _SEQUENCES or hint in (list, tuple):
        return f"a list of {describe(args[0])}" if args else "a list"
    if origin in _MAPPINGS or _is_typeddict(hint):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _is_typeddict(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, dict) and hasattr(hint, "__total__")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(value: Any, hint: Any, where: str, error: type[Exception]) -> None:
    """Raise `error` (taming.config.ConfigError; this module is below it) if `value` cannot be what
    `hint` says; nested values are checked too."""
    problem = _mismatch(value, hint, where)
    if problem:
        raise error(problem)


def _mismatch(value: Any, hint: Any, where: str) -> str | None:
    """A message if value does not fit hint, else None."""
    if hint is Any or hint is inspect.Parameter.empty:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:  # the base type first, then its bounds
        problem = _mismatch(value, args[0], where)
        for rule in (a for a in args[1:] if isinstance(a, Between)):
            problem = problem or rule.problem(value, where)
        return problem
    wrong = f"{where}: expected {describe(hint)}, got {type(value).__name__} {_short(value)}"
    if origin in (Union, types.UnionType):
        problems = [_mismatch(value, a, where) for a in args]
        if all(problems):
            # a value of the right kind with a wrong part names that part (e.g. a list element)
            deeper = [p for p, a in zip(problems, args) if not p.startswith(f"{where}: expected {describe(a)},")]
            return deeper[0] if deeper else wrong
        return None
    if origin is Literal:
        return None if value in args else wrong
    if hint is type(None) or hint is None:
        return None if value is None else wrong
    if hint is bool:
        return None if isinstance(value, bool) else wrong
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else wrong
    if hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return wrong
        return None if isinstance(value, int) or math.isfinite(value) else f"{where}: must be a finite number, got {value}"
    if hint is str:
        return None if isinstance(value, str) else wrong
    if hint in (os.PathLike,) or (isinstance(hint, type) and issubclass(hint, os.PathLike)):
        return None if isinstance(value, (str, os.PathLike)) else wrong
    if _is_typeddict(hint):
        return _typeddict_mismatch(value, hint, where) if isinstance(value, abc.Mapping) else wrong
    if origin in _SEQUENCES or hint in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            return wrong
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                return f"{where}: expected {len(args)} values, got {len(value)}"
            items = list(zip(value, args))
        else:
            items = [(v, args[0]) for v in value] if args else []
        for i, (v, a) in enumerate(items):
            problem = _mismatch(v, a, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if origin in _MAPPINGS or hint in (dict,):
        if not isinstance(value, abc.Mapping):
            return wrong
        if len(args) == 2:
            for k, v in value.items():
                problem = _mismatch(v, args[1], f"{where}.{k}")
                if problem:
                    return problem
        return None
    return None  # classes, callables, ...: not config data


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """"; did you mean 'x'?" naming the closest of `choices` to a misspelt `word`, or ""."""
    close = difflib.get_close_matches(str(word), sorted(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _typeddict_mismatch(value: abc.Mapping, hint: Any, where: str) -> str | None:
    fields = typing.get_type_hints(hint, include_extras=True)
    for key in value:
        if key not in fields:
            return f"{where}: unknown key {key!r}{did_you_mean(key, fields)} (allowed: {', '.join(sorted(fields))})"
    missing = sorted(hint.__required_keys__ - set(value))
    if missing:
        return f"{where}: missing {', '.join(map(repr, missing))}"
    for key, v in value.items():
        problem = _mismatch(v, fields[key], f"{where}.{key}")
        if problem:
            return problem
    check = getattr(hint, "__check__", None)
    if check is not None:
        try:
            check(value, where)
        except Exception as exc:
            return str(exc)
    return None
