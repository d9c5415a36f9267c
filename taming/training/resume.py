"""Which checkpoint a resumed run continues from.

last.ckpt first. If it is missing or corrupt (a run killed while writing it before writes were
atomic, a disk that filled up), say so and continue from the newest complete checkpoint beside it;
if there is none, stop with one line. Temp files of killed writers are swept on the way.

A resumed run trains with the learning rate it prints (`ResumedLearningRate`): Lightning restores
the optimizers with the rate of the first start, so a changed `model.base_learning_rate` (or batch
size, devices, accumulation) is applied to them, and the run says that it now differs from its
recorded config.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from taming.checkpoint import CheckpointError, checkpoint_problem, sweep_temp_files

LAST = "last.ckpt"


def pick_resume_checkpoint(path: str | Path) -> Path:
    """`path` if it is a complete checkpoint; for last.ckpt, else the newest complete one in its folder."""
    path = Path(path)
    sweep_temp_files(path.parent)
    problem = checkpoint_problem(path)
    if problem is None:
        return path
    if path.name != LAST:
        raise CheckpointError(f"--resume: checkpoint {path} is {problem}")
    others = sorted((p for p in path.parent.glob("*.ckpt") if p.name != LAST),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for other in others:
        if checkpoint_problem(other) is None:
            if not launched_worker():  # say it once
                print(f"resume: {path} is {problem}; continuing from the newest complete checkpoint, {other}",
                      flush=True)
            return other
    tried = f" (and {len(others)} other checkpoint(s) there are damaged too)" if others else ""
    raise CheckpointError(f"--resume: {path} is {problem} and {path.parent} holds no other complete checkpoint{tried}")


@rank_zero_only
def tell(message: str) -> None:
    """A line on stderr, from the first process only."""
    print(message, file=sys.stderr, flush=True)


def launched_worker() -> bool:
    """A process a DDP launch started besides the first (rank > 0 on its node, or a node > 0)."""
    return int(os.environ.get("LOCAL_RANK", 0)) > 0 or int(os.environ.get("NODE_RANK", 0)) > 0


class ResumedLearningRate(Callback):
    """Keeps the rate the trainer printed (model.learning_rate) and the rate the optimizers use the same
    after a resume: the checkpoint records the rate it was trained with; a different one now scales
    every restored parameter group (and the schedulers' base rates) by new / old."""

    KEY = "taming_learning_rate"

    def __init__(self) -> None:
        super().__init__()
        self.saved: float | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        rate = getattr(pl_module, "learning_rate", None)
        if isinstance(rate, (int, float)):
            checkpoint[self.KEY] = float(rate)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self.saved = checkpoint.get(self.KEY)
        if self.saved is None and checkpoint.get("optimizer_states"):  # written before the rate was recorded
            group = checkpoint["optimizer_states"][0]["param_groups"][0]
            self.saved = group.get("initial_lr", group.get("lr"))

    def on_train_start(self, trainer, pl_module) -> None:
        old, new = self.saved, getattr(pl_module, "learning_rate", None)
        self.saved = None
        if not isinstance(new, (int, float)) or not old or new == old:
            return
        ratio = new / old
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] *= ratio
                if "initial_lr" in group:
                    group["initial_lr"] *= ratio
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            scheduler.base_lrs = [rate * ratio for rate in scheduler.base_lrs]
            if getattr(scheduler, "_last_lr", None):
                scheduler._last_lr = [rate * ratio for rate in scheduler._last_lr]
        tell(f"resume: learning rate {new:.2e} applied to the restored optimizers (the checkpoint trained with "
             f"{old:.2e}); from here on this run differs from the config it recorded before")
