"""`taming sample`: many samples of an unconditional or class-conditional transformer (the original
scripts/sample_fast.py), e.g. 50 per class of 1000 classes for FID.

    taming sample -r RUN_OR_CKPT [--config ...] -n N [--batch-size B] [--top-k K] [--top-p P]
                  [--temperature T] [--cfg-scale G] [--classes 1,2,3|all] [--seed S]
                  [--precision auto|fp32|bf16|int8] [--accept-rate R [--classifier FILE] [--class-map FILE]
                  [--inception-weights FILE]] -o OUTDIR
(the original's spellings --n_samples, --batch_size, --top_k, --top_p are accepted too)

Writes OUTDIR/samples/ (see taming/generation/samples.py), OUTDIR/grid.png and OUTDIR/settings.json;
a stopped run continues where it stopped. -n counts images per class for class-conditional models.
"""
from __future__ import annotations

import argparse
import contextlib
import resource
import sys
from pathlib import Path

from taming.cli.errors import run_reporting_errors
from taming.cli.numbers import NON_NEGATIVE, PROBABILITY
from taming.cli.sampling_args import Progress, add_model_args, add_sampling_args, sample_settings
from taming.cli.train import ArgumentParser
from taming.config import ConfigError
from taming.generation import rejection
from taming.generation.files import GRID_IMAGES, GRID_ROW, grid_of_files, remove_partial, save_json
from taming.generation.models import checkpoint_info, transformer_run
from taming.precision import prepare_first_stage, resolve
from taming.generation.samples import class_list, plan, write_samples


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="taming sample", description="Sample images from a transformer into a folder.")
    add_model_args(p)
    p.add_argument("-n", "--n-samples", "--n_samples", type=int, required=True, help="images (per class for class-conditional models)")
    p.add_argument("--batch-size", "--batch_size", type=int, default=25, help="images sampled together (default 25)")
    add_sampling_args(p)
    p.add_argument("--cfg-scale", type=NON_NEGATIVE, default=None, help="classifier-free guidance scale (models trained with cfg_dropout)")
    p.add_argument("--classes", default=None, help="'all' (default) or comma-separated class numbers")
    p.add_argument("--accept-rate", type=PROBABILITY, default=None,
                   help="rejection sampling: keep this fraction (0, 1] of candidates, the most likely for their class")
    p.add_argument("--classifier", default=None, help="TorchScript/.pt2 classifier (default: the Inception network)")
    p.add_argument("--class-map", default=None,
                   help="file of the classifier's logit index for each class (default with the Inception network: "
                        "the model's classes are ImageNet's class index, n01440764 = 0, each read at the graph's "
                        "logit for that synset)")
    p.add_argument("--inception-weights", default=None, help="the FID Inception weight file (default classifier)")
    p.add_argument("-o", "--outdir", required=True, help="output folder")
    return p


def grid_paths(items: list, labels: list[int] | None) -> list[Path]:
    """The grid: the first 64 samples, or the first 8 of each of the first 8 classes."""
    if labels is None:
        chosen = items[:GRID_IMAGES]
    else:
        shown = set(labels[:GRID_IMAGES // GRID_ROW])
        chosen = [it for it in items if it.label in shown and it.index < GRID_ROW]
    return [it.path for it in chosen if it.path.is_file()]


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    if args.n_samples < 1 or args.batch_size < 1:
        raise ConfigError("-n and --batch-size must be >= 1")
    loaded = transformer_run(args.run, args.config, args.device, "`taming sample`")
    labels = class_list(loaded, args.classes)
    precision = resolve(args.precision, loaded.device)
    settings = sample_settings(args, precision.name)
    prepare_first_stage(loaded.model.first_stage_model, precision)
    out = Path(args.outdir)
    remove_partial(out)
    items = plan(out, args.n_samples, labels)
    classifier = None
    if args.accept_rate is not None:
        if labels is None:
            raise ConfigError("--accept-rate: rejection sampling needs a class-conditional model")
        rejection.candidate_count(args.n_samples, args.accept_rate)  # checks the rate
        classifier = rejection.load_classifier(args.classifier, args.class_map, loaded.device, args.inception_weights)
    done = sum(it.path.is_file() for it in items)
    records = []
    if classifier is None:
        progress = Progress(len(items), done, "sampling")
        with contextlib.closing(progress):
            write_samples(loaded, items, settings, args.seed, args.batch_size, progress)
    else:
        count = rejection.candidate_count(args.n_samples, args.accept_rate)
        progress = Progress(len(labels) * count, 0, f"sampling {count} candidates per class")
        with contextlib.closing(progress):
            records = [rejection.sample_class(loaded, label, args.n_samples, args.accept_rate, out, settings,
                                              args.seed, args.batch_size, classifier, progress) for label in labels]
    row = GRID_ROW if labels is None else min(GRID_ROW, args.n_samples)  # class-conditional: a row per class
    grid = grid_of_files(grid_paths(items, labels), out / "grid.png", nrow=row)
    report = {
        "command": " ".join(["taming", "sample", *argv]),
        "run": loaded.source.name, "configs": list(loaded.source.configs),
        "checkpoint": checkpoint_info(loaded.source.ckpt),
        "n_samples": args.n_samples, "per_class": labels is not None,
        "classes": "unconditional" if labels is None else labels, "images": len(items),
        "batch_size": args.batch_size, "seed": args.seed, **settings.as_dict(),
        "precision_requested": args.precision, "device": str(loaded.device),
        "already_written": done, "written_now": progress.made, "seconds": round(progress.seconds, 3),
        "images_per_s": round(progress.rate, 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "grid": None if grid is None else str(grid),
    }
    if classifier is not None:
        report["rejection"] = {"accept_rate_requested": args.accept_rate, "classifier": classifier.name,
                               "class_map": classifier.map_name,
                               **rejection.acceptance_summary(records)}
    save_json(report, out / "settings.json")
    line = (f"{len(items)} samples in {out / 'samples'} ({done} already there, {progress.made} made at "
            f"{progress.rate:.2f} images/s, precision {precision.name})")
    if classifier is not None:
        line += f"; acceptance rate {report['rejection']['acceptance_rate']:.4f}"
    print(line)
    return report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_reporting_errors("sample", lambda: run(build_parser().parse_args(argv), argv) and 0)
