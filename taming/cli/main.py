"""`taming` command: one subcommand per job; each module parses its own flags and runs.

    taming train    -b CONFIG.yaml -t ...   train either stage (the original main.py)
    taming tokenize --config ... --data ... encode a dataset into code shards once
    taming demo     [--quick]               both stages on the built-in landscapes, end to end
    taming app      [--logdir RUN]          sample from a trained transformer in the browser
    taming sample   -r RUN -n N -o OUT      many samples of an unconditional / class-conditional transformer
    taming sample-conditional -r RUN -o OUT samples over a dataset split (inputs, conditioning, samples)
    taming sample-window -r RUN --condition MAP.png -o OUT.png   one large image from a map
    taming reconstruct / encode / decode    first stage: images -> images / codes .npy -> images
    taming sample-scene -r RUN --layout L.json -o OUT.png   images from object layouts
    taming eval     samples|reconstruction|likelihood ...   FID/KID/IS/PRC, PSNR/SSIM/LPIPS/rFID, bits/dim
    taming extract-depth / extract-segmentation IMAGES -o OUT   MiDaS depth / DeepLab label maps for training
    taming extract-submodel CKPT OUT --submodel NAME          one submodel's weights out of a checkpoint
    taming weights [fetch NAME...]          the published weight files: where looked for, download on request

User errors (bad config key, missing file, bad value) print one line and exit with status 2.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {  # the module that runs each command, and its function where it is not `main`
    "train": "taming.cli.train",
    "tokenize": "taming.cli.tokenize",
    "demo": "taming.cli.demo",
    "app": "taming.cli.app",
    "sample": "taming.cli.sample",
    "sample-conditional": "taming.cli.sample_conditional",
    "sample-window": "taming.cli.sample_window",
    "reconstruct": "taming.cli.first_stage_args:reconstruct",
    "encode": "taming.cli.first_stage_args:encode",
    "decode": "taming.cli.first_stage_args:decode",
    "eval": "taming.cli.eval",
    "sample-scene": "taming.cli.sample_scene",
    "extract-depth": "taming.cli.extract_maps:depth",
    "extract-segmentation": "taming.cli.extract_maps:segmentation",
    "extract-submodel": "taming.cli.extract_submodel",
    "weights": "taming.cli.weights",
}
USAGE = f"usage: taming {{{','.join(COMMANDS)}}} [options]   (taming COMMAND --help for options)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"taming: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        return 2
    from taming.config import reset_allow_list

    reset_allow_list()  # this command's own --allow-import and $TAMING_ALLOW_IMPORTS, fixed once they are read
    module, _, function = COMMANDS[command].partition(":")
    return getattr(importlib.import_module(module), function or "main")(rest)


if __name__ == "__main__":
    sys.exit(main())
