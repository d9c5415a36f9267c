"""`taming tokenize`: encode a dataset once into shards of codes, for transformer training without the VQGAN.

    taming tokenize --config MODEL.yaml [--ckpt CKPT] [--data DATA.yaml] --out DIR [--shard-size N]
                    [--flip] [--crops K [--crop-size S]] [--splits train validation] [--batch-size B]
                    [--accelerator A --devices D --num_nodes N] [key.path=value ...]

MODEL.yaml is a transformer config (Net2NetTransformer: image codes z from its first stage and
conditioning codes c from its cond stage) or a first-stage config (VQModel & co: z only). --ckpt
loads trained weights into that model (a run folder's last.ckpt). The data come from --data's
`data:` section (default: the model config's), one shard set per split:
    DIR/<split>-000000.tar ...   (format: taming.data.codes; z (h, w) in raster order, c as encoded)
    DIR/data.yaml                a `data:` section reading them (CodeShards), to pass to `taming train`
    DIR/manifest.json            every split's shards, samples and images
Several processes (--devices 2, torchrun, srun) share the batches, each writing its own shards
(<split>-r<rank>-000000.tar): the same codes as one process, in other files.
Variants: --flip adds the mirrored image (and map); --crops K adds K random SxS crops (seeded),
each flipped too with --flip. Each variant is its own sample "<index>_<variant>".
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path
from omegaconf import OmegaConf

from taming.config import add_allow_import
from taming.cli.errors import run_reporting_errors
from taming.cli.sampling_args import Progress
from taming.flags import ArgumentParser, parser_value_flags, split_overrides
from taming.checkpoint import load_model
from taming.config import ConfigError, fix_allow_list, instantiate_from_config, load_config
from taming.data.code_shards import CodeEncoder, data_config_for, encode_split, manifest_for, shard_pattern
from taming.distributed import add_flags, launch
from taming.generation.files import save_json
from taming.precision import add_flag, prepare_first_stage

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="taming tokenize", description="Encode a dataset into shards of codes.")
    p.add_argument("--config", "-b", required=True, help="transformer or first-stage config (YAML)")
    p.add_argument("--ckpt", default=None, help="weights to load into that model (e.g. a run's last.ckpt)")
    p.add_argument("--data", default=None, help="config whose data: section is encoded (default: --config)")
    p.add_argument("--out", required=True, help="output folder for the shards")
    p.add_argument("--shard-size", type=int, default=10000, help="samples per shard")
    p.add_argument("--flip", action="store_true", help="also encode the horizontally flipped variant")
    p.add_argument("--crops", type=int, default=0, help="also encode K random crops per image")
    p.add_argument("--crop-size", type=int, default=None, help="crop side in pixels (default: model resolution)")
    p.add_argument("--splits", nargs="+", default=None, help="splits to encode (default: all configured)")
    p.add_argument("--batch-size", type=int, default=None, help="encoding batch (default: the data config's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crop positions")
    p.add_argument("--limit", type=int, default=None, help="encode at most this many images per split")
    add_flag(p)
    add_allow_import(p)
    add_flags(p)
    return p


def run(args: argparse.Namespace, overrides: list[str]) -> dict:
    world = launch(args)
    model, config = load_model(args.config, args.ckpt, overrides)
    if world.device is not None:
        model = model.to(world.device)
    data_cfg = load_config(args.data).get("data") if args.data else config.get("data")
    if data_cfg is None:
        raise ConfigError(f"no data: section in {args.data or args.config} (pass --data DATA.yaml)")
    tok = CodeEncoder(model)
    prepare_first_stage(tok.first_stage, args.precision)
    dm = instantiate_from_config(data_cfg, where="data")
    dm.setup("fit")
    datasets = getattr(dm, "datasets", {})
    splits = args.splits or [s for s in ("train", "validation", "test") if s in datasets]
    missing = [s for s in splits if s not in datasets]
    if missing:
        raise ConfigError(f"data: no {', '.join(missing)} split (configured: {', '.join(datasets) or 'none'})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    batch_size = args.batch_size or int(data_cfg.params.get("batch_size", 8))
    results = {}
    for split in splits:
        t0 = time.perf_counter()
        total = len(datasets[split]) if hasattr(datasets[split], "__len__") else None
        total = total if args.limit is None or total is None else min(total, args.limit)
        tally = world.tally(Progress(total, 0, f"encoding {split}") if world.main else None)
        with contextlib.closing(tally):
            r = encode_split(tok, datasets[split], shard_pattern(out, split, world), batch_size=batch_size,
                             shard_size=args.shard_size, flip=args.flip, crops=args.crops,
                             crop_size=args.crop_size, seed=args.seed, limit=args.limit, world=world, done=tally)
        throughput = tally.report(world)
        if r is None:  # not rank 0: its shards are in rank 0's manifest
            continue
        results[split] = {**r, "seconds": time.perf_counter() - t0, "images_per_s": throughput["per_s"],
                          "processes": throughput["processes"]}
        print(f"{split}: {r['images']} images -> {r['samples']} code samples (z {r.get('z_shape')}, "
              f"c {r.get('c_shape', '-')}) in {len(r['shards'])} shard(s), {results[split]['seconds']:.1f} s, "
              f"{throughput['per_s']:.2f} images/s" + (" (per process: " + ", ".join(
                  f"{p['per_s']:.2f}" for p in throughput["processes"]) + ")" if world.size > 1 else ""))
    if not world.main:
        return {}
    save_json(manifest_for(out, results, world.size), out / "manifest.json")
    OmegaConf.save(OmegaConf.create(data_config_for(out, results, batch_size)), out / "data.yaml")
    print(f"codes written to {out}/; train on them with: taming train -b TRANSFORMER.yaml {out / 'data.yaml'} -t")
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def go() -> int:
        parser = build_parser()
        flags, overrides = split_overrides(argv, parser_value_flags(parser))
        args, unknown = parser.parse_known_args(flags)
        if unknown:
            raise ConfigError(f"unrecognized argument {unknown[0]!r}")
        if args.shard_size < 1 or args.crops < 0:
            raise ConfigError("--shard-size must be >= 1 and --crops >= 0")
        fix_allow_list(args.allow_import)
        run(args, overrides)
        return 0

    return run_reporting_errors("tokenize", go)
