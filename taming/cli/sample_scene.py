"""`taming sample-scene`: images from object layouts with a scene transformer (objects_bbox or
objects_center_points conditioning, e.g. the original's coco/open_images_scene_images_transformer).

    taming sample-scene -r RUN --layout layout.json -o OUT.png [--samples 4]
        one layout (JSON, see taming/scene.py); OUT.png holds the samples side by side and
        OUT_layout.png the layout drawn as the model reads it (boxes snapped to the token grid)
    taming sample-scene -r RUN --split validation --count 16 -o OUTDIR
        the layouts of a dataset split, as the original's make_scene_samples.py: per example
        OUTDIR/<index>_<file>_sample<k>.png and, beside them, <index>_<file>_layout.png

Category names and the token builder come from the run's dataset config (data.params.<split>);
--data-path points it at the dataset on this machine. Errors a user can cause print one line.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch
from PIL import Image

from taming.cli.errors import run_reporting_errors
from taming.flags import POSITIVE
from taming.flags import ArgumentParser
from taming.config import ConfigError, add_allow_import
from taming.precision import add_flag


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="taming sample-scene", description="Sample images from object layouts.")
    p.add_argument("-r", "--resume", "--logdir", dest="run", required=True,
                   help="run folder logs/<timestamp>_<name> (or a checkpoint file) of a scene transformer")
    p.add_argument("-b", "--config", nargs="+", default=[], help="config YAML(s) instead of the run folder's")
    p.add_argument("--layout", default=None, help="layout JSON: {\"objects\": [{\"category\", \"box\"}, ...]}")
    p.add_argument("--split", default="validation", help="dataset split for names and (without --layout) layouts")
    p.add_argument("--data-path", default=None, help="the dataset's data_path on this machine")
    p.add_argument("--start", type=int, default=0, help="first example of the split (without --layout)")
    p.add_argument("--count", type=int, default=8, help="number of examples of the split (without --layout)")
    p.add_argument("-o", "--out", required=True, help="OUT.png with --layout, else an output folder")
    p.add_argument("--samples", type=int, default=1, help="samples per layout")
    p.add_argument("--top-k", type=int, default=100, help="sample among the k likeliest codes (0: all)")
    p.add_argument("--temperature", type=POSITIVE, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    add_flag(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    add_allow_import(p)
    return p


def save(images: torch.Tensor, path: Path) -> Path:
    """(B, 3, H, W) in [-1, 1] -> one PNG, the images side by side."""
    from taming.images import make_grid

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_grid(images, nrow=images.shape[0], padding=0)).save(path)
    return path


def run(args: argparse.Namespace) -> int:
    from taming.generation.drawing import SamplingSpec
    from taming.generation.runs import transformer_run
    from taming.scene import layout_dataset, layout_tokens, category_numbers, read_layout, sample_scenes

    if args.samples < 1 or args.count < 1 or args.start < 0:
        raise ConfigError("--samples and --count must be >= 1 and --start >= 0")
    run = transformer_run(args.run, args.config, args.device, "`taming sample-scene`")
    model, config = run.model, run.config
    key = model.cond_stage_key
    dataset = layout_dataset(config, args.split, args.data_path)
    generator = torch.Generator(args.device).manual_seed(args.seed)
    spec = SamplingSpec(top_k=args.top_k or None, temperature=args.temperature, precision=args.precision)

    def draw(tokens: torch.Tensor, stem: Path) -> None:
        images = sample_scenes(model, tokens.expand(args.samples, -1), spec, generator)
        side = images.shape[-1]
        layout = dataset.conditional_builders[key].plot(tokens, dataset.get_textual_label_for_category_no,
                                                        (side, images.shape[-2]))
        if args.layout:
            written = [save(images, stem)]
        else:
            written = [save(images[k:k + 1], stem.with_name(f"{stem.name}_sample{k}.png")) for k in range(len(images))]
        layout_path = save(layout[None], stem.with_name(f"{stem.stem}_layout.png"))
        print(f"wrote {', '.join(map(str, written))} and {layout_path}")

    out = Path(args.out)
    if args.layout:
        out = out if out.suffix else out.with_suffix(".png")
        objects, crop = read_layout(args.layout, category_numbers(dataset))
        draw(layout_tokens(dataset, key, objects, crop, args.seed), out)
        return 0
    if args.start >= len(dataset):
        raise ConfigError(f"--start {args.start}: the {args.split} split has {len(dataset)} examples")
    for i in range(args.start, min(args.start + args.count, len(dataset))):
        random.seed(args.seed + i)  # the example's object order (and a random crop) repeat across runs
        example = dataset[i]
        draw(example[key], out / f"{i:06}_{Path(example['file_name']).stem}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_reporting_errors("sample-scene", lambda: run(build_parser().parse_args(argv)))
