"""`taming sample-conditional`: a sample for every example of a dataset split, beside its input,
reconstruction and conditioning (the original scripts/make_samples.py).

    taming sample-conditional -r RUN -o OUTDIR [--split validation] [options]   (SampleConditionalOptions)

Writes OUTDIR/{inputs,reconstructions,conditioning,samples}/000000.png ... (see
taming/generation/conditional.py) and OUTDIR/settings.json; a stopped run continues, on any number
of processes (taming/distributed.py).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from taming.cli.errors import run_reporting_errors
from taming.cli.sampling_args import ModelOptions, ProcessOptions, Progress, SamplingOptions, top_k_flag
from taming.flags import ArgumentParser, add_arguments, flag, from_namespace
from taming.config import ConfigError
from taming.distributed import launch
from taming.generation.conditional import sample_split
from taming.generation.files import remove_partial, save_json
from taming.generation.runs import checkpoint_info, transformer_run
from taming.precision import prepare_first_stage, resolve


@dataclass
class SampleConditionalOptions(ProcessOptions, SamplingOptions, ModelOptions):
    """What `taming sample-conditional` parsed."""
    top_k: int | None = top_k_flag(100)
    split: str = flag("--split", default="validation", help="the config's data.params.<split> (default validation)")
    limit: int | None = flag("--limit", type=int, help="at most this many examples")
    keep_rows: int = flag("--keep-rows", default=0, type=int,
                          help="completion: keep the top rows of each example's image codes, sample the rest (default 0)")
    outdir: str = flag("-o", "--outdir", required=True, help="output folder")


def parse(argv: list[str]) -> SampleConditionalOptions:
    return from_namespace(SampleConditionalOptions, build_parser().parse_args(argv))


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(ArgumentParser(prog="taming sample-conditional", description="Sample given each example "
                                        "of a dataset split."), SampleConditionalOptions)


def run(args: SampleConditionalOptions, argv: list[str]) -> dict:
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit}: must be >= 1")
    if args.keep_rows < 0:
        raise ConfigError(f"--keep-rows {args.keep_rows}: must be >= 0")
    world = launch(args)
    loaded = transformer_run(args.run, args.config, world.device or args.device, "`taming sample-conditional`")
    precision = resolve(args.precision, loaded.device)
    settings = args.spec(precision.name, keep_rows=args.keep_rows)
    prepare_first_stage(loaded.model.first_stage_model, precision)
    out = Path(args.outdir)
    if world.main:  # a killed run's temporary files, before any process writes
        remove_partial(out)
    world.barrier()
    progress = Progress(args.limit, 0, f"sampling {args.split}", unit="examples") if world.main else None
    tally = world.tally(progress)
    with contextlib.closing(tally):
        seen, written = sample_split(loaded, args.split, out, settings, args.seed, args.limit, tally, world)
    throughput = tally.report(world)
    seen = world.gather(seen)
    if seen is None:  # not rank 0
        return {}
    seen, written = sum(seen), throughput["made"]
    report = {"command": " ".join(["taming", "sample-conditional", *argv]), "run": loaded.source.name,
              "configs": list(loaded.source.configs), "checkpoint": checkpoint_info(loaded.source.ckpt),
              "split": args.split, "examples": seen, "written_now": written, "seed": args.seed,
              **asdict(settings), "precision_requested": args.precision, "device": str(loaded.device),
              "seconds": round(progress.seconds, 3), "examples_per_s": throughput["per_s"],
              "processes": throughput["processes"]}
    save_json(report, out / "settings.json")
    print(f"{seen} {args.split} examples -> {out}/{{inputs,reconstructions,conditioning,samples}} "
          f"({written} sampled now, {throughput['per_s']:.2f} examples/s)")
    return report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_reporting_errors("sample-conditional", lambda: run(parse(argv), argv) and 0)
