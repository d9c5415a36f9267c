"""What `taming eval reconstruction/likelihood` evaluate: a model from a run, and batches of one data split.

A run is what `taming app` accepts (taming.generation.runs.resolve_run): a run folder (ours or the
original's: configs/*-project.yaml + checkpoints/last.ckpt), a checkpoint inside one, or any checkpoint
with --config files. The checkpoint is given as the model's own ckpt_path, so it replaces every stage's
weights and the stage files a training config names (often paths on another machine) are not read.
The split's dataset is the config's `data.params.<split>` node, read in order (no shuffling).
"""
from __future__ import annotations

import itertools
from typing import Any, Sequence

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, IterableDataset, Subset

from taming.generation.runs import build, resolve_run
from taming.config import ConfigError, instantiate_from_config
from taming.images import channels_first


def load_evaluated(target: str | None, configs: Sequence[str] = (), overrides: Sequence[str] = ()
                   ) -> tuple[torch.nn.Module, DictConfig, str | None]:
    """(model in eval mode, merged config, the checkpoint file or None) of a run folder or checkpoint."""
    source = resolve_run(target, configs)
    model, config = build(source, overrides)
    return model.eval(), config, source.ckpt


def batch_images(batch: dict[str, Any], key: str) -> torch.Tensor:
    """A dataset batch's channels-last images (B, H, W[, C]) -> float (B, C, H, W), as the models read them."""
    if key not in batch:
        raise ConfigError(f"the data batches have no {key!r} (image key); they hold {sorted(batch)}")
    return channels_first(batch[key])


def split_batches(config: DictConfig, split: str, batch_size: int | None = None,
                  limit: int | None = None) -> DataLoader:
    """Collated batches of the config's data split, in dataset order, at most `limit` items (the
    dataset is built, and its errors raised, here rather than at the first batch)."""
    data = config.get("data")
    params = data.get("params") if isinstance(data, DictConfig) else None
    node = params.get(split) if isinstance(params, DictConfig) else None
    if node is None:
        have = ", ".join(k for k in ("train", "validation", "test") if isinstance(params, DictConfig) and params.get(k))
        raise ConfigError(f"the run's config has no data.params.{split} dataset (it has: {have or 'no data section'}); "
                          "pass --split or --config with a data: section")
    dataset = instantiate_from_config(node, where=f"data.params.{split}")
    if isinstance(dataset, IterableDataset):  # streamed shards (images or pre-tokenized codes)
        if limit is not None:
            dataset = _First(dataset, limit)
    else:
        if limit is not None:
            dataset = Subset(dataset, range(min(limit, len(dataset))))
        if len(dataset) == 0:
            raise ConfigError(f"data.params.{split}: the dataset is empty")
    size = batch_size or int(params.get("batch_size", 8))
    return DataLoader(dataset, batch_size=size, shuffle=False, num_workers=0)


class _First(IterableDataset):
    """The first n items of a stream."""

    def __init__(self, stream: IterableDataset, n: int) -> None:
        self.stream, self.n = stream, n

    def __iter__(self):
        return itertools.islice(iter(self.stream), self.n)
