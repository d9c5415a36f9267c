"""`taming extract-submodel CKPT OUT --submodel NAME`: one submodel's weights out of a transformer
checkpoint, as the original's scripts/extract_submodel.py meant to (it always took cond_stage_model,
whatever it was asked), written as {"state_dict": ...} with the submodel's own key names, which the
matching config loads through its ckpt_path (first_stage_config, cond_stage_config) or, for the
transformer, taming.checkpoint.load_weights into the GPT its transformer_config builds.
"""
from __future__ import annotations

import argparse
import sys

from taming.cli.errors import run_reporting_errors
from taming.config import ConfigError

SUBMODELS = ("first_stage_model", "cond_stage_model", "transformer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taming extract-submodel", description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", help="a checkpoint holding the submodel (e.g. a transformer run's last.ckpt)")
    parser.add_argument("out", help="the checkpoint to write")
    parser.add_argument("submodel_arg", nargs="?", help=argparse.SUPPRESS)  # the original's third argument
    parser.add_argument("--submodel", choices=SUBMODELS, help="default: cond_stage_model (the original's)")
    return parser


def extract_submodel(ckpt: str, out: str, submodel: str) -> int:
    """Write `submodel`'s weights of `ckpt` to `out`; -> how many tensors."""
    from taming.checkpoint import read_state_dict, save_state_dict

    sd = read_state_dict(ckpt)
    prefix = f"{submodel}."
    part = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not part:
        held = sorted({k.split(".", 1)[0] for k in sd if "." in k})
        raise ConfigError(f"{ckpt} holds no {submodel}.* weights; its parts: {', '.join(held) or 'none'}")
    save_state_dict(out, part)
    return len(part)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))

    def go() -> int:
        submodel = args.submodel or args.submodel_arg or "cond_stage_model"
        if submodel not in SUBMODELS:
            raise ConfigError(f"unknown submodel {submodel!r}; one of {', '.join(SUBMODELS)}")
        n = extract_submodel(args.ckpt, args.out, submodel)
        print(f"{submodel}: {n} tensors written to {args.out}")
        return 0

    return run_reporting_errors("extract-submodel", go)
