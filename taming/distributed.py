"""Many processes for the work after training (sampling, tokenizing, scoring), through Lightning Fabric.

`add_flags` gives a command `taming train`'s --accelerator, --devices and --num_nodes; `launch(args)`
turns them into a `World`: this process's rank among `size` processes and the device it runs on.
Fabric starts the other processes (its DDP strategy: gloo on CPUs, NCCL on GPUs), or picks up the ones
torchrun or SLURM started, as Lightning's Trainer does; without those flags and launchers the command
stays one plain process that never imports Lightning.

How the work is split, so that results do not depend on it: a command cuts its work into units that
fix everything a result depends on (a batch of sample indices, of dataset items, of image files),
and process r takes units r, r + size, r + 2 size, ... (`World.share`). A unit is computed the same
way whichever process computes it, so 1 or 8 processes write the same files and gather the same
features. `share` walks the processes in lock step: one small all-reduce per unit carries whether
any process has work left and how many items each finished since the last step, so rank 0's
single progress bar counts the whole job. Files: each process writes only the outputs of its own
units; what concerns the whole job (settings.json, grids, manifests, .npz) is written by rank 0 alone
after `barrier`.
"""
from __future__ import annotations

import argparse
import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TypeVar

import torch

from taming.config import ConfigError

T = TypeVar("T")
_END = object()
FLAGS = ("accelerator", "devices", "num_nodes")
# launchers whose processes Lightning joins: torchrun / torchelastic, Fabric's own children (and srun below)
LAUNCHER_ENV = ("TORCHELASTIC_RUN_ID", "LOCAL_RANK")


def add_flags(p: argparse.ArgumentParser) -> None:
    """--accelerator, --devices, --num_nodes: what they mean for `taming train`."""
    p.add_argument("--accelerator", default=None, help="cpu, gpu, auto, ... (as taming train; default: --device's)")
    p.add_argument("--devices", default=None,
                   help="processes per node: a count, device ids '0,1', or auto (as taming train; default 1, "
                        "or what torchrun / srun started)")
    p.add_argument("--num_nodes", "--num-nodes", type=int, default=None, help="nodes (as taming train; default 1)")


def parse_gpus(gpus: str | int) -> list[int] | int:
    """The original --gpus "0,1" (device ids, trailing comma allowed) or a count."""
    if isinstance(gpus, int):
        return gpus
    text = str(gpus).strip().strip(",")
    try:
        ids = [int(g) for g in text.split(",") if g.strip() != ""]
    except ValueError:
        raise ConfigError(f"--gpus: expected device ids like '0,1' or '0,', got {gpus!r}") from None
    if "," not in str(gpus) and len(ids) == 1:
        return ids[0]  # a plain number is a count, as in Lightning 1.x
    return ids


def parse_devices(devices: Any) -> Any:
    """--devices as Lightning takes it: "2" -> 2, "0,1" -> [0, 1], "auto" stays."""
    if isinstance(devices, str):
        if devices.isdigit() or devices.startswith("-"):
            return int(devices)
        if "," in devices:
            return parse_gpus(devices)
    return devices


def _srun_tasks() -> bool:
    """Several SLURM tasks started by srun, as Lightning's SLURMEnvironment sees them (an interactive
    allocation, job name bash or interactive, is not srun's launch)."""
    try:
        tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    except ValueError:
        return False
    return tasks > 1 and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def wanted(args: argparse.Namespace) -> bool:
    """Whether this command runs under Fabric: a device flag was given, or a launcher started it."""
    return (any(getattr(args, f, None) is not None for f in FLAGS) or any(k in os.environ for k in LAUNCHER_ENV)
            or _srun_tasks())


def _launcher_shape() -> tuple[int | None, int | None]:
    """(processes per node, nodes) a launcher started, as defaults for --devices / --num_nodes."""
    env = os.environ
    try:
        if "TORCHELASTIC_RUN_ID" in env:
            local = int(env["LOCAL_WORLD_SIZE"])
            return local, int(env["WORLD_SIZE"]) // local
        if "SLURM_NTASKS" in env and "SLURM_NTASKS_PER_NODE" in env:
            return int(env["SLURM_NTASKS_PER_NODE"]), int(env.get("SLURM_NNODES", 1))
    except (KeyError, ValueError):  # an unusual launcher: Lightning's own defaults and checks apply
        pass
    return None, None


@dataclass
class World:
    """This process among the command's processes: rank, size, device (None: the command's own --device)."""
    rank: int = 0
    size: int = 1
    device: torch.device | None = None
    fabric: Any = field(default=None, repr=False)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            self.fabric.barrier()

    def from_main(self, compute: Callable[[], T]) -> T:
        """compute() on rank 0, its result on every rank (e.g. the files still to write: every process
        must split the same list, and a fast process may already be writing while another looks)."""
        if self.size == 1:
            return compute()
        return self.fabric.broadcast(compute() if self.main else None, src=0)

    def gather(self, obj: T) -> list[T] | None:
        """Every process's obj, in rank order, on rank 0; None on the others."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size if self.main else None
        torch.distributed.gather_object(obj, out, dst=0)
        return out

    def _sum(self, values: list[float]) -> list[float]:
        if self.size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64 if self.device.type == "cpu" else torch.float32,
                         device=self.device)
        return self.fabric.all_reduce(t, reduce_op="sum").tolist()

    def share(self, units: Iterable[T], tally: Any = None) -> Iterator[T]:
        """This process's units (every size-th from its rank), in lock step with the others: each step
        sums across processes whether any has a unit left and what `tally` (a `Tally`) counted since
        the last step. Every process must iterate to the end."""
        mine = iter(itertools.islice(units, self.rank, None, self.size))
        while True:
            unit = next(mine, _END)
            if self.size > 1:
                more, made = self._sum([float(unit is not _END), float(tally.flush() if tally is not None else 0)])
                if tally is not None:
                    tally.show(int(made))
                if not more:
                    return
            elif unit is _END:
                return
            if unit is not _END:
                yield unit

    def tally(self, show: Callable[[int], None] | None) -> "Tally":
        return Tally(self.size, show)


class Tally:
    """Items this process finished (`made`, `seconds`, `rate`); `show` (rank 0's progress bar) gets the
    whole job's count: at once in one process, at each `World.share` step in several."""

    def __init__(self, processes: int, show: Callable[[int], None] | None) -> None:
        self.processes, self._show = processes, show
        self.made = self._pending = 0
        self.start = time.perf_counter()

    def __call__(self, n: int) -> None:
        self.made += n
        if self.processes == 1:
            self.show(n)
        else:
            self._pending += n

    def flush(self) -> int:
        n, self._pending = self._pending, 0
        return n

    def show(self, n: int) -> None:
        if self._show is not None and n:
            self._show(n)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def close(self) -> None:
        """Closes rank 0's bar (what `show` is or belongs to: a Progress, a tqdm's update), if it has one."""
        owner = getattr(self._show, "__self__", self._show)
        getattr(owner, "close", lambda: None)()

    def report(self, world: World) -> dict | None:
        """On rank 0: {"processes": [{rank, made, seconds, per_s}...], "made", "per_s"} of the whole job."""
        mine = {"rank": world.rank, "made": self.made, "seconds": round(self.seconds, 3),
                "per_s": round(self.made / max(self.seconds, 1e-9), 4)}
        every = world.gather(mine)
        if every is None:
            return None
        seconds = max(p["seconds"] for p in every)
        made = sum(p["made"] for p in every)
        return {"processes": every, "made": made, "per_s": round(made / max(seconds, 1e-9), 4)}


def lazy_batches(batches: Iterable[Any]) -> Iterator[tuple[int, Callable[[], Any]]]:
    """(index, load) of each batch, where load() returns it, for `World.share`: a DataLoader over a
    map-style dataset (in order, no workers) loads only the batches asked for, so a process of several
    reads its share and not every image; other iterables are read as they come."""
    from torch.utils.data import DataLoader, IterableDataset

    if isinstance(batches, DataLoader) and not isinstance(batches.dataset, IterableDataset):
        dataset, collate = batches.dataset, batches.collate_fn
        for index, indices in enumerate(batches.batch_sampler):
            yield index, lambda indices=indices: collate([dataset[i] for i in indices])
    else:
        for index, batch in enumerate(batches):
            yield index, lambda batch=batch: batch


def launch(args: argparse.Namespace) -> World:
    """The processes the device flags ask for (see the module docstring); one plain process without them."""
    if not wanted(args):
        return World()
    if getattr(args, "device", None) is not None:
        raise ConfigError("--device names one device; with --accelerator/--devices/--num_nodes leave it out")
    from lightning.fabric import Fabric  # only here: one-process commands never import Lightning

    local, nodes = _launcher_shape()
    devices = parse_devices(args.devices) if args.devices is not None else (local or 1)
    num_nodes = args.num_nodes if args.num_nodes is not None else (nodes or 1)
    if num_nodes < 1:
        raise ConfigError(f"--num_nodes {num_nodes}: must be >= 1")
    try:
        fabric = Fabric(accelerator=args.accelerator or "auto", devices=devices, num_nodes=num_nodes,
                        strategy="auto")
    except (ValueError, TypeError, RuntimeError) as exc:  # Lightning's MisconfigurationException is a ValueError
        raise ConfigError(f"--accelerator {args.accelerator} --devices {args.devices} --num_nodes {args.num_nodes}: "
                          f"{' '.join(str(exc).split())}") from None
    fabric.launch()
    return World(fabric.global_rank, fabric.world_size, fabric.device, fabric)


__all__ = ["add_flags", "parse_gpus", "parse_devices", "launch", "lazy_batches", "World", "Tally"]
