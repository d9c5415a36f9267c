"""Training stops safely: on a signal (after saving last.ckpt) and on a non-finite loss (before
any checkpoint could take the broken weights).

Both act at the end of a training batch, where the weights, optimizer and loop state agree, and
both agree across processes first (one all-reduce of a flag), so in DDP every rank stops at the
same batch and rank 0 writes the checkpoint (Lightning's strategies write on rank 0 only).

Signals: SIGTERM (schedulers, `kill`) saves and exits 143, SIGINT (Ctrl-C) saves and exits 130, a
second Ctrl-C stops at once; SIGUSR1 saves and continues, as the original's `melk`. Lightning's own
SIGTERM handling would exit with status 0 at the end of the epoch, so the handlers are replaced
while training runs.
"""
from __future__ import annotations

import math
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from taming.training.callbacks import batch_step
from taming.training.resume import tell
from taming.training.stop import NonFiniteLoss, RunStopped

# signal -> (how urgent, when several arrive before a batch ends; exit status, None: continue)
SIGNALS = {signal.SIGUSR1: (1, None), signal.SIGINT: (2, 130), signal.SIGTERM: (3, 143)}
BY_URGENCY = {urgency: sig for sig, (urgency, _) in SIGNALS.items()}


def agree(trainer: L.Trainer, value: int) -> int:
    """The largest `value` over all processes (itself when there is one)."""
    if trainer.world_size == 1 or not torch.distributed.is_initialized():
        return value
    flag = torch.tensor([value], device=trainer.strategy.root_device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return int(flag.item())


class SignalCheckpoint(Callback):
    def __init__(self, ckptdir: str | Path) -> None:
        super().__init__()
        self.ckptdir = Path(ckptdir)
        self.pending = 0  # urgency of the signal received since the last batch end
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        urgency = SIGNALS[signum][0]
        if signum == signal.SIGINT and self.pending == urgency:
            raise KeyboardInterrupt  # Ctrl-C twice: the user does not want to wait for the save
        self.pending = max(self.pending, urgency)

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            self.previous.setdefault(sig, signal.getsignal(sig))
            signal.signal(sig, self._handle)

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._install()

    def on_train_start(self, trainer, pl_module) -> None:
        self._install()  # after Lightning's own SIGTERM handler, which this replaces

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        urgency = agree(trainer, self.pending)
        if not urgency:
            return
        self.pending = 0
        sig = BY_URGENCY[urgency]
        path = self.ckptdir / "last.ckpt"
        trainer.save_checkpoint(str(path), weights_only=False)  # the whole training state, as ModelCheckpoint
        code = SIGNALS[sig][1]
        then = "continuing" if code is None else f"exiting with status {code}"
        tell(f"{signal.Signals(sig).name}: saved {path} at step {trainer.global_step}; {then}")
        if code is not None:
            raise RunStopped(code)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in self.previous.items():
                signal.signal(sig, handler)
        self.previous = {}


def non_finite_terms(outputs: Any, metrics: dict[str, Any]) -> list[str]:
    """Names of the step's loss terms that are NaN or infinite: the returned loss and logged train metrics."""
    terms = {}
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if torch.is_tensor(loss) and loss.numel() == 1:
        terms["loss"] = loss
    terms.update((k, v) for k, v in metrics.items() if "train" in k and not k.endswith("_epoch"))
    bad = []
    for name, value in terms.items():
        if torch.is_tensor(value) and value.numel() == 1:
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            bad.append(f"{name} = {value}")
    shown = [b for b in bad if not (b.split(" = ")[0].endswith("_step") and b.replace("_step = ", " = ") in bad)]
    return shown[:4] + ([f"{len(shown) - 4} more"] if len(shown) > 4 else [])


class NonFiniteGuard(Callback):
    """Stops at the first non-finite loss, before ModelCheckpoint (always the last callback) saves."""

    def __init__(self, ckptdir: str | Path) -> None:
        super().__init__()
        self.ckptdir = Path(ckptdir)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bad = non_finite_terms(outputs, trainer.callback_metrics)
        if not agree(trainer, int(bool(bad))):
            return
        what = ", ".join(bad) if bad else "a loss on another process"
        last = self.ckptdir / "last.ckpt"
        kept = f"the last good checkpoint is kept: {last}" if last.is_file() else "no checkpoint was written yet"
        raise NonFiniteLoss(f"non-finite loss at step {batch_step(trainer) + 1} (epoch {trainer.current_epoch}, "
                            f"batch {batch_idx}): {what}; training stopped, {kept} (lower the learning rate?)")


class FinalCheckpoint(Callback):
    """A run that ends normally (max_steps, max_epochs) leaves its final weights in last.ckpt.

    ModelCheckpoint writes last.ckpt after a validation or an epoch; a run stopped by max_steps between
    two of them would otherwise leave last.ckpt steps behind, and the next stage (or a resume) would
    read stale weights. When the step limit falls inside an epoch the save happens at the end of that
    batch, where a signal saves: after the epoch's end hooks Lightning's loop state calls the epoch
    finished, and a resume with a larger --max_steps would start a new one instead of continuing it.
    Runs stopped by a signal or a non-finite loss never reach these saves."""

    def __init__(self, ckptdir: str | Path) -> None:
        super().__init__()
        self.ckptdir = Path(ckptdir)
        self.saved_step = -1

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(str(self.ckptdir / "last.ckpt"), weights_only=False)
        self.saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loop = trainer.fit_loop.epoch_loop
        if 0 < trainer.max_steps <= trainer.global_step and not loop.batch_progress.is_last_batch:
            self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        saved = getattr(trainer.checkpoint_callback, "_last_global_step_saved", -1)
        if trainer.global_step not in (saved, self.saved_step) and not trainer.interrupted:
            self._save(trainer)


def safety_callbacks(ckptdir: str | Path, stop_on_nan: bool = True) -> list[Callback]:
    guard = [NonFiniteGuard(ckptdir)] if stop_on_nan else []
    return [*guard, SignalCheckpoint(ckptdir), FinalCheckpoint(ckptdir)]
