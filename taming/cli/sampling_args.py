"""Flags and progress shared by the sampling commands (sample, sample-conditional, sample-window,
reconstruct, encode, decode): the model to load, the sampling settings, a tqdm bar with images/s."""
from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from taming.config import add_allow_import
from taming.config import ConfigError
from taming.cli.numbers import POSITIVE, PROBABILITY
from taming.generation.samples import SampleSettings
from taming.precision import add_flag


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-r", "--resume", "--logdir", dest="run", default=None,
                   help="run folder logs/<timestamp>_<name> (ours or the original's) or a checkpoint file")
    p.add_argument("--config", "-b", nargs="+", default=[],
                   help="config YAML(s), merged left to right (default: the run folder's configs/*-project.yaml)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    add_allow_import(p)  # the run's config is built: its targets go through the allow-list


def add_sampling_args(p: argparse.ArgumentParser, top_k: int | None = 250) -> None:
    p.add_argument("--top-k", "--top_k", "-k", type=int, default=top_k, help=f"keep the k most likely codes (default {top_k}; 0: all)")
    p.add_argument("--top-p", "--top_p", "-p", type=PROBABILITY, default=None, help="nucleus sampling: keep codes up to this probability")
    p.add_argument("--temperature", "-t", type=POSITIVE, default=1.0, help="softmax temperature (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="sample i is seeded by (seed, i) alone (default 0)")
    add_flag(p)


def sample_settings(args: argparse.Namespace, precision: str) -> SampleSettings:
    if args.top_k is not None and args.top_k < 0:
        raise ConfigError(f"--top-k {args.top_k}: must be >= 0 (0: every code)")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ConfigError(f"--top-p {args.top_p}: must be in (0, 1]")
    if args.temperature <= 0:
        raise ConfigError(f"--temperature {args.temperature}: must be > 0")
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: must be >= 0")
    return SampleSettings(top_k=args.top_k or None, top_p=args.top_p, temperature=args.temperature,
                          cfg_scale=getattr(args, "cfg_scale", None), precision=precision)


class Progress:
    """A tqdm bar with items/s (images by default); `rate` counts only the items made in this run."""

    def __init__(self, total: int | None, done: int, desc: str, unit: str = "images") -> None:
        self.unit = unit
        self.bar = tqdm(total=total, initial=done, desc=desc, unit=f" {unit}", file=sys.stderr, dynamic_ncols=True)
        self.start = time.perf_counter()
        self.made = 0

    def __call__(self, n: int) -> None:
        self.made += n
        self.bar.update(n)
        self.bar.set_postfix_str(f"{self.rate:.2f} {self.unit}/s", refresh=False)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    @property
    def rate(self) -> float:
        return self.made / max(self.seconds, 1e-9)

    def close(self) -> None:
        self.bar.close()
