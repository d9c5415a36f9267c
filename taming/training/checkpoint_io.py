"""Lightning checkpoints written atomically, and never with non-finite weights.

Every Lightning save (ModelCheckpoint's periodic files and last.ckpt, the signal handlers',
`trainer.save_checkpoint`) goes through the strategy's CheckpointIO; `build_job` plugs this one in.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from taming.checkpoint import CheckpointError, atomic_write


def _write(checkpoint: dict[str, Any], path: Path) -> None:
    torch.save(checkpoint, path)  # module-level: a test slows it down to kill a process mid-write


def first_non_finite(state_dict: dict[str, Any]) -> str | None:
    """Name of the first floating tensor holding NaN or inf, else None."""
    for key, value in state_dict.items():
        if type(value) is torch.Tensor and value.is_floating_point() and value.numel():
            if not math.isfinite(float(value.detach().float().abs().max())):
                return key
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        bad = first_non_finite(checkpoint.get("state_dict", {}))
        if bad is not None:  # a good checkpoint must never be replaced by broken weights
            raise CheckpointError(f"not writing {path}: weight {bad} is not finite")
        with atomic_write(path) as tmp:
            _write(checkpoint, tmp)
