"""Callbacks of the original main.py, for Lightning 2: run folder setup, image logging, step timing
and checkpointing.

Step counting: the original's `global_step` counted batches. Lightning 2's `trainer.global_step`
counts optimizer steps; the VQGAN shells (taming.training.first_stage) keep it equal to the batch
count by counting only their generator step, so `max_steps` keeps its meaning. The image logger
uses `batch_step(trainer)`, the batch count itself, so it holds for any manually optimized model.
"""
from __future__ import annotations

import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from taming.checkpoint import sweep_temp_files
from taming.images import make_grid, save_grid
from taming.training.determinism import preserve_rng

log = logging.getLogger(__name__)


def batch_step(trainer: L.Trainer) -> int:
    """Training batches completed so far (the original global_step, at the start of a batch).

    Lightning's `_batches_that_stepped` (also the loggers' x axis) advances once per batch under
    manual optimization and once per optimizer step under automatic optimization, which is the
    same thing without gradient accumulation; see ResumeStepFix for its value after a resume.
    """
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


class ResumeStepFix(Callback):
    """After a resume, puts the loggers' step back on the batch count.

    Lightning adds one to its saved batch counter when it restarts from a checkpoint written at
    the end of an epoch, so every metric of a resumed run would be logged one step late. When
    the model's global_step counts batches (automatic optimization without accumulation, and the
    VQGAN shells, which count their generator step only), the counter is set from it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending = False

    def on_train_start(self, trainer, pl_module) -> None:
        self.pending = trainer.ckpt_path is not None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.pending:
            return
        self.pending = False
        if trainer.accumulate_grad_batches == 1 and getattr(pl_module, "accumulate_grad_batches", 1) == 1:
            trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step


class SetupCallback(Callback):
    """Creates logs/<now>_<name>/{checkpoints,configs,images} and writes the merged configs there."""

    def __init__(self, resume: bool, now: str, logdir: str | Path, ckptdir: str | Path, cfgdir: str | Path,
                 config: DictConfig, lightning_config: DictConfig) -> None:
        super().__init__()
        self.resume, self.now = resume, now
        self.logdir, self.ckptdir, self.cfgdir = Path(logdir), Path(ckptdir), Path(cfgdir)
        self.config, self.lightning_config = config, lightning_config

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.global_rank != 0:
            return  # every rank shares rank 0's folder name (see taming.training.trainer.run_name)
        for d in (self.logdir, self.ckptdir, self.cfgdir, self.logdir / "images"):
            d.mkdir(parents=True, exist_ok=True)
        sweep_temp_files(self.ckptdir)  # unfinished writes of a killed earlier start of this run
        project = self.cfgdir / f"{self.now}-project.yaml"
        OmegaConf.save(self.config, project)
        OmegaConf.save(OmegaConf.create({"lightning": self.lightning_config}), self.cfgdir / f"{self.now}-lightning.yaml")
        rank_zero_info(f"Project config written to {project}")


class ImageLogger(Callback):
    """Writes the model's `log_images(batch)` grids as PNG to <logdir>/images/{train,val} and TensorBoard.

    Train images are logged when the batch step is a multiple of `batch_frequency`, and additionally
    at steps 1, 2, 4, ... below it when `increase_log_steps` (as the original); validation images on
    batches whose index is a multiple of `batch_frequency` or 0.
    """

    def __init__(self, batch_frequency: int = 750, max_images: int = 4, clamp: bool = True,
                 increase_log_steps: bool = True, log_images_kwargs: dict | None = None) -> None:
        super().__init__()
        if batch_frequency < 1:
            raise ValueError(f"ImageLogger: batch_frequency must be >= 1, got {batch_frequency}")
        self.batch_freq, self.max_images, self.clamp = batch_frequency, max_images, clamp
        powers = [2 ** n for n in range(int(np.log2(batch_frequency)) + 1)]
        self.log_steps = set(powers) if increase_log_steps else set()
        self.log_images_kwargs = dict(log_images_kwargs or {})

    def _due(self, step: int) -> bool:
        return step % self.batch_freq == 0 or step in self.log_steps

    @torch.no_grad()
    def log_img(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
                split: str, step: int) -> None:
        if self.max_images <= 0 or not callable(getattr(pl_module, "log_images", None)):
            return
        was_training = pl_module.training
        pl_module.eval()
        try:
            with preserve_rng():  # sampling here must not shift the training's random stream
                images = pl_module.log_images(batch, split=split, **self.log_images_kwargs)
        finally:
            pl_module.train(was_training)
        if trainer.global_rank != 0:
            return
        root = Path(trainer.default_root_dir) / "images" / split
        for key, value in images.items():
            if not torch.is_tensor(value) or value.dim() != 4:
                continue
            value = value[: self.max_images].detach().float().cpu()
            if self.clamp:
                value = value.clamp(-1, 1)
            name = f"{key}_gs-{step:06}_e-{trainer.current_epoch:06}_b-{batch_idx:06}.png"
            save_grid(value, root / name)
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_image(f"{split}/{key}", make_grid(value), step, dataformats="HWC")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = batch_step(trainer)  # not yet advanced for this batch: 0 for the first one
        if self._due(step):
            self.log_img(trainer, pl_module, batch, batch_idx, "train", step)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking and self._due(batch_idx):
            self.log_img(trainer, pl_module, batch, batch_idx, "val", batch_step(trainer))


class StepTimer(Callback):
    """Prints the mean step time, images/s and peak memory every `every` batches (the original's CUDACallback)."""

    def __init__(self, every: int = 50) -> None:
        super().__init__()
        self.every = every
        self._t0: float | None = None
        self._n = self._images = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._t0 is None:
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._n += 1
        self._images += batch_size(batch) or 0
        if self._n % self.every:
            return
        if torch.cuda.is_available() and pl_module.device.type == "cuda":
            torch.cuda.synchronize()
            mem = f"GPU peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        else:
            mem = f"peak RSS {_peak_rss_gib():.2f} GiB"
        dt = (time.perf_counter() - self._t0) / self._n
        rank_zero_info(f"step {batch_step(trainer) + 1}: {dt:.3f} s/step, {self._images / (dt * self._n):.1f} "
                       f"images/s, {mem}")
        pl_module.log_dict({"perf/step_time": dt}, on_step=True, rank_zero_only=True)
        self._t0, self._n, self._images = time.perf_counter(), 0, 0


def _peak_rss_gib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**30 if sys.platform == "darwin" else rss / 2**20


def batch_size(batch: Any) -> int | None:
    """Examples in a batch: the first dimension of its first tensor (of a dict's values, a list's first item)."""
    if isinstance(batch, dict):
        batch = next((v for v in batch.values() if torch.is_tensor(v) and v.ndim > 0), None)
    if isinstance(batch, (list, tuple)) and batch:
        batch = batch[0]
    return int(batch.shape[0]) if torch.is_tensor(batch) and batch.ndim > 0 else None


def make_checkpoint_callback(ckptdir: str | Path, monitor: str | None = None, every_n_train_steps: int | None = None,
                             overrides: dict | None = None) -> ModelCheckpoint:
    """ModelCheckpoint as the original: `{epoch:06}.ckpt` per epoch plus last.ckpt, the 3 best if monitored.

    `every_n_train_steps` switches the periodic files to `{epoch:06}-{step:09}.ckpt` every N optimizer steps.
    """
    # no `last-v1.ckpt`: a run folder resumed after it was moved or downloaded keeps writing last.ckpt
    kwargs: dict[str, Any] = {"dirpath": str(ckptdir), "filename": "{epoch:06}", "verbose": True, "save_last": True,
                              "enable_version_counter": False}
    if monitor:
        kwargs.update(monitor=monitor, save_top_k=3)
    if every_n_train_steps:
        kwargs.update(filename="{epoch:06}-{step:09}", every_n_train_steps=int(every_n_train_steps))
        kwargs.setdefault("save_top_k", -1)
    kwargs.update(overrides or {})
    return ModelCheckpoint(**kwargs)
