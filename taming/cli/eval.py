"""`taming eval`: measure samples, a first stage's reconstructions, or a transformer's likelihood.

    taming eval samples --real DIR_OR_NPZ --fake DIR_OR_NPZ [options]   (SamplesOptions)
    taming eval reconstruction -r RUN_OR_CKPT [options]                  (ReconstructionOptions)
    taming eval likelihood -r RUN_OR_CKPT [options]                      (RunOptions)

Results print as a table and, with --json, are written with torch-fidelity's key names for the sample
metrics. Inception and VGG16 run in float32 whatever --precision says; --precision applies to the
evaluated model. Precision/recall use VGG16's fc2_relu features (torch-fidelity's default, the file
vgg16-397923af.pth); when that file is missing and prc was not asked for by name, prc is left out with
the reason in the table. `samples` and `reconstruction` take `taming train`'s --accelerator, --devices and
--num_nodes (or torchrun / srun): every process computes the features of its share of the batches and
rank 0 the numbers, the same as one process computes (taming/distributed.py).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from taming.config import add_allow_import
from taming.cli.errors import run_reporting_errors
from taming.flags import ArgumentParser, add_arguments, added, flag, from_namespace
from taming.config import ConfigError, fix_allow_list
from taming.cli.sampling_args import ProcessOptions
from taming.distributed import World, launch
from taming.precision import add_flag, prepare_first_stage

DEFAULT_METRICS = "fid,kid,isc,prc"


@dataclass
class EvalOptions:
    """Flags of every `taming eval` subcommand."""
    json: str | None = flag("--json", help="also write the results to this JSON file")
    device: str | None = flag("--device", help="torch device (default cpu)")
    what: str = ""  # the subcommand


@dataclass
class SamplesOptions(ProcessOptions, EvalOptions):
    """`taming eval samples`."""
    real: str = flag("--real", required=True, help="folder of real images, an .npz of images (ADM's arr_0), or an "
                     ".npz of FID statistics (mu, sigma)")
    fake: str = flag("--fake", required=True, help="folder of generated images, or an .npz of them (ADM's arr_0)")
    metrics: str = flag("--metrics", default=DEFAULT_METRICS,
                        help="comma-separated subset of fid,kid,isc,prc (with statistics as --real: fid,isc)")
    inception_weights: str | None = flag("--inception-weights", help="pt_inception-2015-12-05-6726825d.pth")
    vgg16_weights: str | None = flag("--vgg16-weights", help="vgg16-397923af.pth (torchvision's ImageNet VGG16), "
                                     "for prc; default: $TAMING_VGG16, then the torch hub cache")
    prc_features: str = flag("--prc-features", default="vgg16", choices=("vgg16", "inception"),
                             help="precision/recall features: vgg16 = fc2_relu of VGG16, torch-fidelity's default; "
                                  "inception = the FID network's 2048-d pool features (default vgg16)")
    kid_subsets: int = flag("--kid-subsets", default=100, type=int)
    kid_subset_size: int = flag("--kid-subset-size", default=1000, type=int)
    isc_splits: int = flag("--isc-splits", default=10, type=int)
    batch_size: int = flag("--batch-size", default=64, type=int)
    save_real_stats: str | None = flag("--save-real-stats", help="write --real's FID statistics to this .npz")


@dataclass
class RunOptions(EvalOptions):
    """The evaluated run and its data split."""
    run: str = flag("-r", "--run", required=True, help="run folder, or a checkpoint (inside one, or with --config)")
    config: list[str] = flag("--config", "-b", factory=list, nargs="+", help="config files (default: the run folder's)")
    split: str = flag("--split", default="validation", help="data split of the config (default validation)")
    limit: int | None = flag("--limit", type=int, help="evaluate at most this many images")
    batch_size: int | None = flag("--batch-size", type=int, help="default: the data config's")
    precision: str = added(add_flag, "auto")  # of the evaluated model
    allow_import: list[str] = added(add_allow_import, factory=list)  # the run's config is built: targets checked


@dataclass
class ReconstructionOptions(ProcessOptions, RunOptions):
    """`taming eval reconstruction`."""
    inception_weights: str | None = flag("--inception-weights", help="for rFID (left out when not found)")
    no_rfid: bool = flag("--no-rfid", default=False, action="store_true", help="skip rFID")


SUBCOMMANDS = {"samples": (SamplesOptions, "FID, KID, IS, precision/recall (torch-fidelity 0.4.0)"),
               "reconstruction": (ReconstructionOptions, "PSNR, SSIM, LPIPS, rFID and codebook use of a first stage"),
               "likelihood": (RunOptions, "validation NLL per code and bits per dim of a transformer")}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="taming eval", description="Evaluate samples, reconstructions or likelihoods.")
    sub = p.add_subparsers(dest="what", metavar="{samples,reconstruction,likelihood}", required=True,
                           parser_class=ArgumentParser)
    for name, (options, help) in SUBCOMMANDS.items():
        add_arguments(sub.add_parser(name, help=help), options)
    return p


def parse(argv: list[str]) -> EvalOptions:
    ns = build_parser().parse_args(argv)
    return from_namespace(SUBCOMMANDS[ns.what][0], ns, what=ns.what)


def print_table(title: str, result: dict[str, Any]) -> None:
    rows = [(k, v) for k, v in result.items() if not isinstance(v, dict)]
    width = max(len(k) for k, _ in rows)
    print(title)
    for k, v in rows:
        text = f"{v:.6g}" if isinstance(v, float) else str(v)
        print(f"  {k:<{width}}  {text}")
    for column, why in result.get("skipped", {}).items():
        print(f"  {column:<{width}}  (left out: {why})")


def check_outputs(args: EvalOptions) -> None:
    """Where results go can be written: checked before the work, not after it."""
    for flag in ("json", "save_real_stats"):
        path = getattr(args, flag, None)
        if path and Path(path).is_dir():
            raise ConfigError(f"--{flag.replace('_', '-')} {path}: is a folder; give a file name")


def _samples(args: EvalOptions, world: World) -> dict[str, Any]:
    from taming.eval.inception import load_inception
    from taming.eval.samples import check_inputs, is_statistics, parse_metrics, sample_metrics

    try:
        metrics = parse_metrics(args.metrics)
    except ValueError as exc:
        raise ConfigError(f"--metrics: {exc}") from None
    for flag, low in (("kid_subsets", 1), ("kid_subset_size", 2), ("isc_splits", 1), ("batch_size", 1)):
        if getattr(args, flag) < low:
            raise ConfigError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be >= {low}")
    check_inputs(args.real, args.fake)  # every input, before the networks load and features are computed
    skipped = {}
    if is_statistics(args.real) and args.metrics == DEFAULT_METRICS:  # statistics hold no features
        skipped = {m: f"--real {args.real} holds statistics, not features" for m in ("kid", "prc")}
        metrics = tuple(m for m in metrics if m not in skipped)
    vgg = "prc" in metrics and args.prc_features == "vgg16"
    net = None
    if set(metrics) - {"prc"} or not vgg or args.save_real_stats:
        net = load_inception(args.inception_weights, args.device)
    prc_net = None
    if vgg:
        from taming.eval.vgg16 import load_vgg16
        from taming.eval.weights import VGG16WeightsNotFound

        try:
            prc_net = load_vgg16(args.vgg16_weights, args.device)
        except VGG16WeightsNotFound as exc:
            if args.vgg16_weights or args.metrics != DEFAULT_METRICS:  # asked for: an error, not a skip
                raise
            skipped["prc"] = str(exc)
            metrics = tuple(m for m in metrics if m != "prc")
    result = sample_metrics(net, args.real, args.fake, metrics, args.batch_size, args.kid_subsets,
                            args.kid_subset_size, args.isc_splits, args.save_real_stats, progress=True,
                            prc_net=prc_net, world=world)  # rank 0 alone writes the statistics
    return {**result, "skipped": skipped} if skipped else result


def _reconstruction(args: EvalOptions, world: World) -> dict[str, Any]:
    from taming.eval import reconstruction as rec
    from taming.eval.runs import load_evaluated, split_batches
    from taming.eval.weights import InceptionWeightsNotFound

    fix_allow_list(args.allow_import)
    model, config, ckpt = load_evaluated(args.run, args.config)
    model = model.to(args.device)
    first_stage = getattr(model, "first_stage_model", model)  # a transformer run: its first stage
    skipped: dict[str, str] = {}
    lpips = rec.checkpoint_lpips(ckpt, config)
    if lpips is None:
        lpips, why = rec.local_lpips()
        if why:
            skipped["lpips"] = why
    inception = None
    if args.no_rfid:
        skipped["rfid"] = "--no-rfid"
    else:
        from taming.eval.inception import load_inception

        try:
            inception = load_inception(args.inception_weights, args.device)
        except InceptionWeightsNotFound as exc:
            if args.inception_weights:  # asked for explicitly: a typo is an error, not a silent skip
                raise
            skipped["rfid"] = str(exc)
    if lpips is not None:
        lpips = lpips.to(args.device)
    key = getattr(model, "first_stage_key", None) or getattr(first_stage, "image_key", "image")
    batches = split_batches(config, args.split, args.batch_size, args.limit)
    prepare_first_stage(first_stage, args.precision)
    total = len(batches.dataset) if hasattr(batches.dataset, "__len__") else None
    bar = tqdm(total=total, desc="reconstructing", unit="img", file=sys.stderr, leave=False) if world.main else None
    tally = world.tally(None if bar is None else bar.update)
    with contextlib.closing(tally):
        return rec.evaluate_reconstruction(first_stage, batches, key, lpips, inception, skipped, world, tally)


def _likelihood(args: EvalOptions, world: World) -> dict[str, Any]:
    from taming.eval.likelihood import evaluate_likelihood
    from taming.eval.runs import load_evaluated, split_batches

    fix_allow_list(args.allow_import)
    model, config, _ = load_evaluated(args.run, args.config)
    if not hasattr(model, "transformer"):
        raise ConfigError(f"{args.run}: the model is {type(model).__name__}, not a transformer; "
                          "`taming eval likelihood` needs a Net2NetTransformer run")
    model = model.to(args.device)
    batches = split_batches(config, args.split, args.batch_size, args.limit)
    prepare_first_stage(model.first_stage_model, args.precision)
    # "auto"/"fp32"/"int8": the teacher-forced forward stays float32 (int8 is a decoding precision)
    return evaluate_likelihood(model, batches, autocast_bf16=args.precision == "bf16")


def run(args: EvalOptions) -> int:
    check_outputs(args)
    world = launch(args) if args.what != "likelihood" else World()
    args.device = str(world.device or args.device or "cpu")
    with torch.no_grad():  # a context, not set_grad_enabled: main() runs inside other programs and tests too
        result = {"samples": _samples, "reconstruction": _reconstruction,
                  "likelihood": _likelihood}[args.what](args, world)
    if not world.main:  # rank 0 prints and writes the results of every process
        return 0
    print_table(f"taming eval {args.what}", result)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"written: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_reporting_errors("eval", lambda: run(parse(argv)))
