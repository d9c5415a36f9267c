"""`taming extract-depth IMAGES -o OUT`: MiDaS v2.1 depth maps (see taming/cli/extract_maps.py)."""
from __future__ import annotations

from taming.cli.extract_maps import run


def main(argv: list[str] | None = None) -> int:
    import sys

    return run("depth", list(sys.argv[1:] if argv is None else argv))
