"""Flags and progress shared by the sampling commands (sample, sample-conditional, sample-window,
reconstruct, encode, decode): the model to load, the sampling settings, a tqdm bar with images/s."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from tqdm import tqdm

from taming.config import ConfigError, add_allow_import
from taming.generation.drawing import SamplingSpec
from taming.distributed import add_flags
from taming.flags import POSITIVE, PROBABILITY, added, flag
from taming.precision import add_flag


@dataclass
class ModelOptions:
    """The run to load: flags shared by the sampling commands."""
    run: str | None = flag("-r", "--resume", "--logdir", help="run folder logs/<timestamp>_<name> (ours or the "
                           "original's) or a checkpoint file")
    config: list[str] = flag("--config", "-b", factory=list, nargs="+",
                             help="config YAML(s), merged left to right (default: the run folder's configs/*-project.yaml)")
    device: str | None = flag("--device", help="cpu or cuda (default: cuda when available)")
    allow_import: list[str] = added(add_allow_import, factory=list)  # the run's config is built: its targets are checked


@dataclass
class ProcessOptions:
    """--accelerator, --devices, --num_nodes (taming.distributed.add_flags): the processes to run on."""
    accelerator: str | None = added(add_flags)
    devices: str | None = added(None)
    num_nodes: int | None = added(None)


def top_k_flag(default: int) -> int | None:
    """The --top-k field, with a command's default."""
    return flag("--top-k", "--top_k", "-k", default=default, type=int,
                help="keep the k most likely codes (default %(default)s; 0: all)")


@dataclass
class SamplingOptions:
    """How to sample (taming.generation.drawing.SamplingSpec), as flags."""
    top_k: int | None = top_k_flag(250)
    top_p: float | None = flag("--top-p", "--top_p", "-p", type=PROBABILITY,
                               help="nucleus sampling: keep codes up to this probability")
    temperature: float = flag("--temperature", "-t", default=1.0, type=POSITIVE, help="softmax temperature (default 1.0)")
    seed: int = flag("--seed", default=0, type=int, help="sample i is seeded by (seed, i) alone (default 0)")
    precision: str = added(add_flag, "auto")

    def spec(self, precision: str, **more) -> SamplingSpec:
        """The spec at `precision` (resolved from "auto"); `more`: the command's own settings."""
        if self.top_k is not None and self.top_k < 0:
            raise ConfigError(f"--top-k {self.top_k}: must be >= 0 (0: every code)")
        if self.seed < 0:
            raise ConfigError(f"--seed {self.seed}: must be >= 0")
        return SamplingSpec(top_k=self.top_k or None, top_p=self.top_p, temperature=self.temperature,
                            precision=precision, seed=self.seed, **more)


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

    def fraction(self, done: float) -> None:
        """A sampler's progress (fraction of its codes) on a bar counted in codes."""
        self.bar.total = self.bar.total or 100
        self(round(done * self.bar.total) - self.made)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    @property
    def rate(self) -> float:
        return self.made / max(self.seconds, 1e-9)

    def close(self) -> None:
        self.bar.close()
