"""`taming extract-depth` and `taming extract-segmentation`: the original's extract_depth.py and
extract_segmentation.py as one command each (taming/prep).

    taming extract-depth IMAGES -o OUT [--weights FILE] [--batch-size 4] [--device auto] [--precision auto]
    taming extract-segmentation IMAGES -o OUT ...
IMAGES: an image folder, a file list (paths relative to --root, default the list's folder), or a
config .yaml with --split (the dataset data.params.SPLIT builds; key.path=value items override it).
OUT mirrors the images' relative paths with .png: the layout the depth and segmentation datasets read.
"""
from __future__ import annotations

import argparse
import re
import sys

from taming.cli.errors import run_reporting_errors
from taming.config import ConfigError
from taming.flags import ArgumentParser


def build_parser(kind: str) -> argparse.ArgumentParser:
    network = {"depth": "MiDaS v2.1 depth (float32 packed into RGBA PNGs)",
               "segmentation": "DeepLab v2 COCO-Stuff label maps (mode-L PNGs, labels 0..181)"}[kind]
    parser = ArgumentParser(prog=f"taming extract-{kind}", description=f"{network} for every image.")
    parser.add_argument("images", help="image folder, image list file, or dataset config .yaml")
    parser.add_argument("-o", "--out", required=True, help="output folder (the images' relative paths, .png)")
    parser.add_argument("--root", help="image list: the folder its paths are relative to (default: the list's)")
    parser.add_argument("--split", default="train", help="config: the data.params split to extract (default train)")
    parser.add_argument("--weights", help="the published weight file (default: $TAMING_MIDAS / $TAMING_DEEPLAB, "
                                          "then the `taming weights` cache)")
    parser.add_argument("--fetch-weights", action="store_true", help="download the weights if they are missing")
    parser.add_argument("--batch-size", type=int, default=4, help="images per network call (same input size)")
    parser.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="auto: bf16 where bf16 convolutions are fast (taming.hardware), else fp32; "
                             "fp32 computes what the reference does")
    parser.add_argument("--workers", type=int, default=1, help="image-reading processes (0: read in this one)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


OVERRIDE = re.compile(r"^[A-Za-z_][\w\-]*(\.[\w\-]+)+=")  # data.params.train.params.root=...


def run(kind: str, argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = [a for i, a in enumerate(argv) if not (OVERRIDE.match(a) and not (i and argv[i - 1].startswith("-")))]
    overrides = [a for a in argv if a not in flags]

    def go() -> int:
        args = build_parser(kind).parse_args(flags)
        from taming.prep.extract import compute_dtype, extract, resolve_device
        from taming.prep.inputs import collect
        from taming.prep.maps import MAKERS
        from taming.weights import FetchError, WeightsNotFound

        if args.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
        if overrides and not args.images.endswith((".yaml", ".yml")):
            raise ConfigError(f"key=value overrides ({overrides[0]}) go with a config .yaml only")
        items = collect(args.images, root=args.root, split=args.split, overrides=overrides)
        try:
            device = resolve_device(args.device)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        dtype = compute_dtype(args.precision, device)
        try:
            maker = MAKERS[kind].from_weights(args.weights, fetch=True if args.fetch_weights else None,
                                              device=device, dtype=dtype)
        except (WeightsNotFound, FetchError) as exc:
            raise ConfigError(str(exc)) from None
        print(f"taming extract-{kind}: {len(items)} images, {device}, {str(dtype).replace('torch.', '')}, "
              f"batches of up to {args.batch_size}", file=sys.stderr)
        report = extract(maker, items, args.out, batch_size=args.batch_size, workers=args.workers,
                         progress=not args.quiet)
        print(report.summary(args.out))
        return 1 if report.unreadable and not report.written and not report.existing else 0

    return run_reporting_errors(f"extract-{kind}", go)


def depth(argv: list[str] | None = None) -> int:
    return run("depth", argv)


def segmentation(argv: list[str] | None = None) -> int:
    return run("segmentation", argv)
