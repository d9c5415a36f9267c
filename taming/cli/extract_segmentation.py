"""`taming extract-segmentation IMAGES -o OUT`: DeepLab v2 COCO-Stuff label maps (see taming/cli/extract_maps.py)."""
from __future__ import annotations

from taming.cli.extract_maps import run


def main(argv: list[str] | None = None) -> int:
    import sys

    return run("segmentation", list(sys.argv[1:] if argv is None else argv))
