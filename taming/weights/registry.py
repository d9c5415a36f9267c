"""Every published weight file the project can use, and where each is looked for.

A file is found, in order, at: the path given on the command line (then nowhere else: a typo must
not fall back silently), its environment variable (a file or a folder holding it), the cache folder
of `taming weights` ($TAMING_WEIGHTS_DIR, default $XDG_CACHE_HOME/taming/weights, i.e.
~/.cache/taming/weights), then the places other tools put it (the torch hub cache, ...).

Nothing is downloaded unless asked: `taming weights fetch NAME` (taming/weights/fetch.py), a
command's `--fetch-weights`, or TAMING_FETCH_WEIGHTS=1 in the environment. A missing file's error
names every place looked at and the fetch command.

Checksums: the publisher's MD5 for LPIPS; the SHA-256 prefix that torchvision-style names embed
(`vgg16-397923af.pth`: SHA-256 starts 397923af) for VGG16, the FID Inception and MiDaS. DeepLab's
file has no published checksum: its size (as the server declares it) and its keys, read with
weights_only, are checked instead.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

CACHE_ENV = "TAMING_WEIGHTS_DIR"
FETCH_ENV = "TAMING_FETCH_WEIGHTS"


class WeightsNotFound(FileNotFoundError):
    """A weight file is not on disk; the message says where it was looked for and how to fetch it."""


def cache_dir() -> Path:
    """The folder `taming weights fetch` writes to."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "taming" / "weights"


def hub_checkpoints() -> list[Path]:
    """torchvision's and torch.hub's download folder ($TORCH_HOME/hub/checkpoints)."""
    return [Path(torch.hub.get_dir()) / "checkpoints"]


@dataclass(frozen=True)
class WeightFile:
    name: str  # what `taming weights fetch NAME` takes
    what: str  # "torchvision's ImageNet VGG16 weights"
    files: tuple[str, ...]  # accepted file names; fetched under the first
    urls: tuple[str, ...]  # the published URLs, tried in order
    env: str  # environment variable naming the file or its folder
    used_by: str
    flag: str | None = None  # the command-line flag that names the file, where one does
    md5: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None  # bytes, where the publisher states it
    keys_check: Callable[[dict], str | None] | None = field(default=None, compare=False)  # no checksum: key check
    other_places: Callable[[], list[Path]] = field(default=lambda: [], compare=False)

    @property
    def checksum(self) -> str:
        if self.md5:
            return f"MD5 {self.md5}"
        if self.sha256_prefix:
            return f"SHA-256 {self.sha256_prefix}..."
        return "none published (size and keys checked)"

    @property
    def fetch_command(self) -> str:
        return f"taming weights fetch {self.name}"


def _candidates(spec: WeightFile, path: str | os.PathLike | None,
                defaults: Sequence[Path] | None) -> list[tuple[Path, str]]:
    def expand(p: Path, why: str) -> list[tuple[Path, str]]:
        return [(p / name, why) for name in spec.files] if p.is_dir() else [(p, why)]

    if path:
        return expand(Path(path).expanduser(), spec.flag or "given path")
    found = expand(Path(os.environ[spec.env]).expanduser(), f"${spec.env}") if os.environ.get(spec.env) else []
    found += [(cache_dir() / name, "taming weights cache") for name in spec.files]
    for folder in (spec.other_places() if defaults is None else defaults):
        found += [(Path(folder) / name, "default") for name in spec.files]
    return found


def places(spec: WeightFile, path=None, defaults: Sequence[Path] | None = None) -> list[tuple[Path, str]]:
    """Where `spec` is looked for, in order, with why each place is looked at."""
    return _candidates(spec, path, defaults)


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
    for candidate, why in _candidates(spec, path, defaults):
        if candidate.is_file():
            return candidate
        looked.append(f"{candidate} ({why})")
    if not path and fetch_wanted(fetch):
        from taming.weights.fetch import fetch as download

        return download(spec)
    flag = spec.flag if flag == "" else flag
    how = f"pass {flag} FILE or set ${spec.env}" if flag else f"set ${spec.env} to it"
    raise error(
        f"{spec.what} '{spec.files[0]}' " + "".join(f"(or '{n}') " for n in spec.files[1:])
        + "is not on disk. Looked in: " + "; ".join(looked)
        + f". Fetch it with `{spec.fetch_command}` (from {' or '.join(spec.urls)}), or {how}"
        + (f", {hint}" if hint else "") + ". Nothing is downloaded unless asked.")


def lookup(names: Iterable[str]) -> list[WeightFile]:
    """Registry entries by name; ValueError naming the known ones for an unknown name."""
    from taming.weights.files import REGISTRY

    out = []
    for name in names:
        if name not in REGISTRY:
            raise ValueError(f"unknown weight file {name!r}; known: {', '.join(REGISTRY)}")
        out.append(REGISTRY[name])
    return out
