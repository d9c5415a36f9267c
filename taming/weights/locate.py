"""Finding a weight file where registry.py says to look, downloading it only if asked."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from taming.weights.fetch import fetch as download
from taming.weights.registry import FETCH_ENV, WeightFile, WeightsNotFound, places


def fetch_wanted(fetch: bool | None) -> bool:
    if fetch is not None:
        return fetch
    return os.environ.get(FETCH_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def find(spec: WeightFile, path: str | os.PathLike | None = None, *, defaults: Sequence[Path] | None = None,
         error: type[WeightsNotFound] = WeightsNotFound, fetch: bool | None = None, hint: str = "",
         flag: str | None = "") -> Path:
    """The first place that holds `spec` (module docstring); fetched into the cache if asked (`fetch`,
    or $TAMING_FETCH_WEIGHTS), else `error` naming every place, the fetch command and `hint`.
    `defaults` replaces the spec's other places; `flag` its command-line flag in the message (None: none)."""
    looked = []
    for candidate, why in places(spec, path, defaults):
        if candidate.is_file():
            return candidate
        looked.append(f"{candidate} ({why})")
    if not path and fetch_wanted(fetch):
        return download(spec)
    flag = spec.flag if flag == "" else flag
    how = f"pass {flag} FILE or set ${spec.env}" if flag else f"set ${spec.env} to it"
    raise error(
        f"{spec.what} '{spec.files[0]}' " + "".join(f"(or '{n}') " for n in spec.files[1:])
        + "is not on disk. Looked in: " + "; ".join(looked)
        + f". Fetch it with `{spec.fetch_command}` (from {' or '.join(spec.urls)}), or {how}"
        + (f", {hint}" if hint else "") + ". Nothing is downloaded unless asked.")
