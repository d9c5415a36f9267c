"""`--allow-import PKG` on every command that builds from a config (see taming.config.allow_imports)."""
from __future__ import annotations

import argparse

from taming.config import ALLOW_IMPORT_HELP


def add_allow_import(parser: argparse.ArgumentParser) -> None:
    """The flag; the command hands `args.allow_import` to taming.config.allow_imports before reading a config."""
    parser.add_argument("--allow-import", dest="allow_import", action="append", default=[], metavar="PKG",
                        help=ALLOW_IMPORT_HELP)
