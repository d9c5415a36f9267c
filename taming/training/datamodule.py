"""DataModuleFromConfig: the original `main.DataModuleFromConfig`, for Lightning 2.

Datasets are `target:`/`params:` nodes built with taming.config.instantiate_from_config. Map-style
training sets are read through a DistributedSampler even in a single process: the order is then
one seeded permutation per epoch that N processes split between them, so a run on N devices with
batch B sees the same global batches as one device with batch N*B. IterableDatasets (WebDataset
streams) split themselves between nodes and workers and are passed through as they are.

`drop_last: true` keeps every training batch full. The original kept an epoch's last, partial batch;
on a small dataset that is a sizeable share of all steps (20 images in batches of 8: every third
step sees 4), which slows learning measurably (BENCHMARKS.md, S-FLCKR quality).
"""
from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from taming.config import ConfigError, instantiate_from_config
from taming.data.base import Forwarding
from taming.data.collate import collate  # default_collate; per-example object lists stay lists
from taming.training.determinism import EpochSampler, ResumableSampler, SeededSamples, batches_done_this_epoch


class WrappedDataset(Forwarding):
    """Any object with __len__ and __getitem__ as a torch Dataset (the original's `wrap: true`)."""

    def __init__(self, dataset: Any) -> None:
        self.data = dataset


def default_num_workers(batch_size: int) -> int:
    """The original used batch_size*2 workers; more worker processes than cores only adds overhead."""
    return max(0, min(batch_size * 2, os.cpu_count() or 1))


class DataModuleFromConfig(L.LightningDataModule):
    def __init__(self, batch_size: int, train: Any = None, validation: Any = None, test: Any = None,
                 wrap: bool = False, num_workers: int | None = None, shuffle: bool = True,
                 seed: int | None = None, persistent_workers: bool = True, pin_memory: bool | None = None,
                 drop_last: bool = False) -> None:
        super().__init__()
        if int(batch_size) < 1:
            raise ConfigError(f"data.params.batch_size: must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.num_workers = default_num_workers(self.batch_size) if num_workers is None else int(num_workers)
        self.dataset_configs = {k: v for k, v in (("train", train), ("validation", validation), ("test", test))
                                if v is not None}
        self.wrap, self.shuffle, self.seed, self.drop_last = wrap, shuffle, seed, drop_last
        self.persistent_workers, self.pin_memory = persistent_workers, pin_memory
        self.datasets: dict[str, Any] = {}
        # The original exposed the loaders as attributes only for configured splits.
        for split, loader in zip(("train", "validation", "test"), ("train", "val", "test")):
            if split not in self.dataset_configs:
                setattr(self, f"{loader}_dataloader", None)

    def setup(self, stage: str | None = None) -> None:
        for split, cfg in self.dataset_configs.items():
            if split not in self.datasets:
                ds = instantiate_from_config(cfg, where=f"data.params.{split}")
                self.datasets[split] = WrappedDataset(ds) if self.wrap else ds

    def _current_epoch(self) -> int | None:
        trainer = getattr(self, "trainer", None)
        return None if trainer is None else trainer.current_epoch

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup()
        ds = self.datasets[split]
        workers = self.num_workers
        pin = self.pin_memory if self.pin_memory is not None else torch.cuda.is_available()
        drop_last = train and self.drop_last  # applies to streams too; validation always sees everything
        seed = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        # worker seeds come from this generator, not the global one the model's training draws from
        common = dict(batch_size=self.batch_size, num_workers=workers, pin_memory=pin, collate_fn=collate,
                      persistent_workers=self.persistent_workers and workers > 0,
                      generator=torch.Generator().manual_seed(seed))
        if isinstance(ds, IterableDataset):
            return DataLoader(ds, drop_last=drop_last, **common)
        trainer = getattr(self, "trainer", None)
        world, rank = (1, 0) if trainer is None else (trainer.world_size, trainer.global_rank)
        if train:  # exact resume: seeded examples, mid-epoch skip (taming.training.determinism)
            sampler = ResumableSampler(ds, self._current_epoch, lambda: batches_done_this_epoch(self.trainer),
                                       self.batch_size, num_replicas=world, rank=rank, shuffle=self.shuffle,
                                       seed=seed, drop_last=drop_last)
            return DataLoader(SeededSamples(ds, seed), sampler=sampler, drop_last=drop_last, **common)
        if world > 1:
            sampler = EpochSampler(ds, self._current_epoch, num_replicas=world, rank=rank, shuffle=False, seed=seed)
            return DataLoader(ds, sampler=sampler, drop_last=drop_last, **common)
        return DataLoader(ds, shuffle=False, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
