"""`--allow-import PKG` on every command that builds from a config (see taming.config.allow_imports).

The flag takes effect as it is parsed, so a command cannot forget to apply it before reading a config.
"""
from __future__ import annotations

import argparse
from typing import Any

from taming.config import ALLOW_IMPORT_HELP, allow_imports


class _AllowImport(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        allow_imports([values])
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])


def add_allow_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-import", dest="allow_import", action=_AllowImport, default=[], metavar="PKG",
                        help=ALLOW_IMPORT_HELP)
