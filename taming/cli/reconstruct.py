"""`taming reconstruct -r RUN IMAGES_OR_DIRS... -o OUTDIR [--size S]`: images through a first stage."""
from __future__ import annotations

from taming.cli.first_stage_args import main_for
from taming.generation.first_stage import IMAGE_SUFFIXES, reconstruct


def main(argv: list[str] | None = None) -> int:
    return main_for("reconstruct", "Reconstruct images with a first stage (encode, quantize, decode).",
                    IMAGE_SUFFIXES, reconstruct, argv)
