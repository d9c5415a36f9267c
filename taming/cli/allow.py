"""`--allow-import PKG`: the user's word that config targets may name PKG (see taming.config).

Every command that builds from a config adds the flag with `add_allow_import` and applies it with
`apply_allow_import` before reading any config. The packages are also put in $TAMING_ALLOW_IMPORTS,
so processes the command starts (DDP ranks, the app's server) hold the same list.
"""
from __future__ import annotations

import argparse
import os
from typing import Iterable

from taming.config import ALLOW_ENV, allow_imports

HELP = ("also let config targets name this package (repeatable, or comma-separated); by default only "
        "taming, torch.nn, torch.optim and Lightning callbacks/loggers are imported from a config")


def add_allow_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-import", dest="allow_import", action="append", default=[], metavar="PKG", help=HELP)


def apply_allow_import(packages: Iterable[str]) -> None:
    packages = [p.strip() for item in packages for p in str(item).split(",") if p.strip()]
    if not packages:
        return
    allow_imports(packages)
    known = [p for p in os.environ.get(ALLOW_ENV, "").split(",") if p]
    os.environ[ALLOW_ENV] = ",".join(dict.fromkeys(known + packages))
