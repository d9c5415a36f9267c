"""`taming encode -r RUN IMAGES_OR_DIRS... -o OUTDIR [--size S]`: images -> code grids (<stem>.npy)."""
from __future__ import annotations

from taming.cli.first_stage_args import main_for
from taming.generation.first_stage import IMAGE_SUFFIXES, encode


def main(argv: list[str] | None = None) -> int:
    return main_for("encode", "Encode images into first-stage codes (.npy, (h, w) int64).", IMAGE_SUFFIXES, encode, argv)
