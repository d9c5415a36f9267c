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
from dataclasses import dataclass
from pathlib import Path

import torch

from taming.cli.errors import run_reporting_errors
from taming.config import ConfigError, add_allow_import
from taming.flags import POSITIVE, ArgumentParser, add_arguments, added, flag, from_namespace
from taming.images import save_grid
from taming.precision import add_flag


@dataclass
class SampleSceneOptions:
    """What `taming sample-scene` parsed."""
    run: str = flag("-r", "--resume", "--logdir", required=True,
                    help="run folder logs/<timestamp>_<name> (or a checkpoint file) of a scene transformer")
    config: list[str] = flag("-b", "--config", factory=list, nargs="+", help="config YAML(s) instead of the run folder's")
    layout: str | None = flag("--layout", help="layout JSON: {\"objects\": [{\"category\", \"box\"}, ...]}")
    split: str = flag("--split", default="validation", help="dataset split for names and (without --layout) layouts")
    data_path: str | None = flag("--data-path", help="the dataset's data_path on this machine")
    start: int = flag("--start", default=0, type=int, help="first example of the split (without --layout)")
    count: int = flag("--count", default=8, type=int, help="number of examples of the split (without --layout)")
    out: str = flag("-o", "--out", required=True, help="OUT.png with --layout, else an output folder")
    samples: int = flag("--samples", default=1, type=int, help="samples per layout")
    top_k: int = flag("--top-k", default=100, type=int, help="sample among the k likeliest codes (0: all)")
    temperature: float = flag("--temperature", default=1.0, type=POSITIVE)
    seed: int = flag("--seed", default=0, type=int)
    precision: str = added(add_flag, "auto")
    device: str = flag("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    allow_import: list[str] = added(add_allow_import, factory=list)  # the run's config is built: its targets are checked


def parse(argv: list[str]) -> SampleSceneOptions:
    return from_namespace(SampleSceneOptions, build_parser().parse_args(argv))


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(ArgumentParser(prog="taming sample-scene", description="Sample images from object layouts."),
                         SampleSceneOptions)


def run(args: SampleSceneOptions) -> int:
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
        if args.layout:  # the samples side by side
            written = [save_grid(images, stem, nrow=len(images), padding=0)]
        else:
            written = [save_grid(images[k:k + 1], stem.with_name(f"{stem.name}_sample{k}.png"), padding=0)
                       for k in range(len(images))]
        layout_path = save_grid(layout[None], stem.with_name(f"{stem.stem}_layout.png"), padding=0)
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
    return run_reporting_errors("sample-scene", lambda: run(parse(argv)))
