"""`taming sample`: many samples of an unconditional or class-conditional transformer (the original
scripts/sample_fast.py), e.g. 50 per class of 1000 classes for FID.

    taming sample -r RUN_OR_CKPT -n N -o OUTDIR [options]   (SampleOptions)
(the original's spellings --n_samples, --batch_size, --top_k, --top_p are accepted too)

Writes OUTDIR/samples/ (see taming/generation/samples.py), OUTDIR/grid.png and OUTDIR/settings.json;
a stopped run continues where it stopped. -n counts images per class for class-conditional models.
--npz also writes every sample as ADM's evaluation suite reads them (taming/eval/adm_npz.py). Several
processes (--devices 2, torchrun, srun) share the batches and write the same files as one; a run
stopped on 8 continues on 2 (taming/distributed.py).
"""
from __future__ import annotations

import argparse
import contextlib
from dataclasses import asdict, dataclass
import resource
import sys
from pathlib import Path

from taming.cli.errors import run_reporting_errors
from taming.flags import NON_NEGATIVE, PROBABILITY
from taming.cli.sampling_args import ModelOptions, ProcessOptions, Progress, SamplingOptions
from taming.flags import ArgumentParser, add_arguments, flag, from_namespace
from taming.config import ConfigError
from taming.distributed import launch
from taming.eval.adm_npz import write_images
from taming.generation import rejection
from taming.generation.files import GRID_IMAGES, GRID_ROW, grid_of_files, remove_partial, save_json
from taming.generation.runs import checkpoint_info, transformer_run
from taming.precision import prepare_first_stage, resolve
from taming.generation.samples import class_list, plan, write_samples


@dataclass
class SampleOptions(ProcessOptions, SamplingOptions, ModelOptions):
    """What `taming sample` parsed."""
    n_samples: int = flag("-n", "--n-samples", "--n_samples", type=int, required=True,
                          help="images (per class for class-conditional models)")
    batch_size: int = flag("--batch-size", "--batch_size", default=25, type=int,
                           help="images sampled together (default 25)")
    cfg_scale: float | None = flag("--cfg-scale", type=NON_NEGATIVE,
                                   help="classifier-free guidance scale (models trained with cfg_dropout)")
    classes: str | None = flag("--classes", help="'all' (default) or comma-separated class numbers")
    accept_rate: float | None = flag("--accept-rate", type=PROBABILITY, help="rejection sampling: keep this "
                                     "fraction (0, 1] of candidates, the most likely for their class")
    classifier: str | None = flag("--classifier", help="TorchScript/.pt2 classifier (default: the Inception network)")
    class_map: str | None = flag("--class-map", help="file of the classifier's logit index for each class (default "
                                 "with the Inception network: the model's classes are ImageNet's class index, "
                                 "n01440764 = 0, each read at the graph's logit for that synset)")
    inception_weights: str | None = flag("--inception-weights",
                                         help="the FID Inception weight file (default classifier)")
    npz: str | None = flag("--npz", help="also write the samples to this .npz (ADM's format: arr_0, arr_1 labels)")
    outdir: str = flag("-o", "--outdir", required=True, help="output folder")


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(ArgumentParser(prog="taming sample", description="Sample images from a transformer "
                                        "into a folder."), SampleOptions)


def parse(argv: list[str]) -> SampleOptions:
    return from_namespace(SampleOptions, build_parser().parse_args(argv))


def grid_paths(items: list, labels: list[int] | None) -> list[Path]:
    """The grid: the first 64 samples, or the first 8 of each of the first 8 classes."""
    if labels is None:
        chosen = items[:GRID_IMAGES]
    else:
        shown = set(labels[:GRID_IMAGES // GRID_ROW])
        chosen = [it for it in items if it.label in shown and it.index < GRID_ROW]
    return [it.path for it in chosen if it.path.is_file()]


def run(args: SampleOptions, argv: list[str]) -> dict:
    if args.n_samples < 1 or args.batch_size < 1:
        raise ConfigError("-n and --batch-size must be >= 1")
    world = launch(args)
    loaded = transformer_run(args.run, args.config, world.device or args.device, "`taming sample`")
    labels = class_list(loaded, args.classes)
    precision = resolve(args.precision, loaded.device)
    settings = args.spec(precision.name, cfg_scale=args.cfg_scale)
    prepare_first_stage(loaded.model.first_stage_model, precision)
    out = Path(args.outdir)
    if world.main:  # a killed run's temporary files, before any process writes
        remove_partial(out)
    world.barrier()
    items = plan(out, args.n_samples, labels)
    classifier = None
    if args.accept_rate is not None:
        if labels is None:
            raise ConfigError("--accept-rate: rejection sampling needs a class-conditional model")
        count = rejection.candidate_count(args.n_samples, args.accept_rate)  # checks the rate
        from taming.eval.classifier import load_classifier

        classifier = load_classifier(args.classifier, args.class_map, loaded.device, args.inception_weights)
    done = world.from_main(lambda: sum(it.path.is_file() for it in items))
    records = []
    if classifier is None:
        progress = Progress(len(items), done, "sampling") if world.main else None
        tally = world.tally(progress)
        with contextlib.closing(tally):
            write_samples(loaded, items, settings, args.seed, args.batch_size, tally, world)
    else:  # a class per unit: its candidates, scores and kept images stay in one process
        progress = Progress(len(labels) * count, 0, f"sampling {count} candidates per class") if world.main else None
        tally = world.tally(progress)
        with contextlib.closing(tally):
            records = [rejection.sample_class(loaded, label, args.n_samples, args.accept_rate, out, settings,
                                              args.seed, args.batch_size, classifier, tally)
                       for label in world.share(labels, tally)]
        records = sorted(sum(world.gather(records) or [], []), key=lambda r: r["class"])
    throughput = tally.report(world)
    world.barrier()
    if not world.main:
        return {}
    row = GRID_ROW if labels is None else min(GRID_ROW, args.n_samples)  # class-conditional: a row per class
    grid = grid_of_files(grid_paths(items, labels), out / "grid.png", nrow=row)
    report = {
        "command": " ".join(["taming", "sample", *argv]),
        "run": loaded.source.name, "configs": list(loaded.source.configs),
        "checkpoint": checkpoint_info(loaded.source.ckpt),
        "n_samples": args.n_samples, "per_class": labels is not None,
        "classes": "unconditional" if labels is None else labels, "images": len(items),
        "batch_size": args.batch_size, "seed": args.seed, **asdict(settings),
        "precision_requested": args.precision, "device": str(loaded.device),
        "already_written": done, "written_now": throughput["made"], "seconds": round(progress.seconds, 3),
        "images_per_s": throughput["per_s"], "processes": throughput["processes"],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "grid": None if grid is None else str(grid),
    }
    if args.npz:
        report["npz"] = str(write_images(args.npz, [it.path for it in items],
                                         None if labels is None else [it.label for it in items]))
    if classifier is not None:
        report["rejection"] = {"accept_rate_requested": args.accept_rate, "classifier": classifier.name,
                               "class_map": classifier.map_name,
                               **rejection.acceptance_summary(records)}
    save_json(report, out / "settings.json")
    line = (f"{len(items)} samples in {out / 'samples'} ({done} already there, {throughput['made']} made at "
            f"{throughput['per_s']:.2f} images/s, precision {precision.name})")
    if world.size > 1:
        line += "; per process: " + ", ".join(f"{p['per_s']:.2f}" for p in throughput["processes"])
    if args.npz:
        line += f"; {report['npz']}"
    if classifier is not None:
        line += f"; acceptance rate {report['rejection']['acceptance_rate']:.4f}"
    print(line)
    return report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_reporting_errors("sample", lambda: run(parse(argv), argv) and 0)
