"""`taming sample-conditional`: a sample for every example of a dataset split, beside its input,
reconstruction and conditioning (the original scripts/make_samples.py).

    taming sample-conditional -r RUN [--config ...] [--split validation] [--limit N] -o OUTDIR
                              [--top-k K] [--top-p P] [--temperature T] [--seed S] [--precision P]

Writes OUTDIR/{inputs,reconstructions,conditioning,samples}/000000.png ... (see
taming/generation/conditional.py) and OUTDIR/settings.json; a stopped run continues.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taming.cli.errors import run_reporting_errors
from taming.cli.sampling_args import Progress, add_model_args, add_sampling_args, sample_settings
from taming.cli.train import ArgumentParser
from taming.config import ConfigError
from taming.generation.conditional import sample_split
from taming.generation.files import remove_partial, save_json
from taming.generation.models import checkpoint_info, transformer_run
from taming.precision import prepare_first_stage, resolve


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="taming sample-conditional", description="Sample given each example of a dataset split.")
    add_model_args(p)
    p.add_argument("--split", default="validation", help="the config's data.params.<split> (default validation)")
    p.add_argument("--limit", type=int, default=None, help="at most this many examples")
    add_sampling_args(p, top_k=100)
    p.add_argument("-o", "--outdir", required=True, help="output folder")
    return p


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit}: must be >= 1")
    loaded = transformer_run(args.run, args.config, args.device, "`taming sample-conditional`")
    precision = resolve(args.precision, loaded.device)
    settings = sample_settings(args, precision.name)
    prepare_first_stage(loaded.model.first_stage_model, precision)
    out = Path(args.outdir)
    remove_partial(out)
    progress = Progress(args.limit, 0, f"sampling {args.split}", unit="examples")
    try:
        seen, written = sample_split(loaded, args.split, out, settings, args.seed, args.limit, progress)
    finally:
        progress.close()
    report = {"command": " ".join(["taming", "sample-conditional", *argv]), "run": loaded.source.name,
              "configs": list(loaded.source.configs), "checkpoint": checkpoint_info(loaded.source.ckpt),
              "split": args.split, "examples": seen, "written_now": written, "seed": args.seed,
              **settings.as_dict(), "precision_requested": args.precision, "device": str(loaded.device),
              "seconds": round(progress.seconds, 3), "examples_per_s": round(progress.rate, 4)}
    save_json(report, out / "settings.json")
    print(f"{seen} {args.split} examples -> {out}/{{inputs,reconstructions,conditioning,samples}} "
          f"({written} sampled now, {progress.rate:.2f} examples/s)")
    return report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_reporting_errors("sample-conditional", lambda: run(build_parser().parse_args(argv), argv) and 0)
