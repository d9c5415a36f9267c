"""`taming decode -r RUN CODES.npy_OR_DIRS... -o OUTDIR`: code grids -> images (<stem>.png)."""
from __future__ import annotations

from taming.cli.first_stage_args import main_for
from taming.generation.first_stage import decode


def main(argv: list[str] | None = None) -> int:
    return main_for("decode", "Decode first-stage codes (.npy) into images.", (".npy",), decode, argv, takes_size=False)
