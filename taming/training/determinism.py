"""Exact resume: N steps, stop, resume to 2N gives the weights and optimizer state of 2N straight steps.

Three sources of randomness, each made independent of how many steps ran before:
- data order: the training sampler's permutation is seeded by seed + epoch (EpochSampler), and after
  a mid-epoch resume it skips what this epoch already trained on (`ResumableSampler`);
- augmentation: every example is drawn with Python's, numpy's and torch's generators seeded from
  (seed, epoch, index) (`SeededSamples`), the same in any worker, any number of workers, any resume;
  in the main process the global states are put back afterwards;
- the model's own draws (dropout, Gumbel noise, the transformer's pkeep masks): `RandomState`
  saves the global generators in each checkpoint and puts them back before the first resumed
  batch. Validation and image logging draw in a forked state, so the training stream is the same
  whether or not a run stopped and validated in between.
State of the model outside its state_dict (the codebook health counters that time dead-code
restarts, kept out of it so the original checkpoints load strictly) travels in the checkpoint too
(`ModuleState`).
"""
from __future__ import annotations

import contextlib
import random
from typing import Any, Callable, Iterator

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import Dataset, DistributedSampler, get_worker_info


class EpochSampler(DistributedSampler):
    """DistributedSampler whose epoch is the trainer's current epoch when iteration starts.

    Lightning hands `set_epoch` a restarted run's epoch counter one too high when the checkpoint was
    written at the end of an epoch, so a resumed run would shuffle differently from an
    uninterrupted one; `trainer.current_epoch` is right in both cases.
    """

    def __init__(self, dataset: Any, get_epoch: Any = None, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.get_epoch = get_epoch

    def __iter__(self):
        epoch = self.get_epoch() if self.get_epoch is not None else None
        if epoch is not None:
            self.epoch = int(epoch)
        return super().__iter__()


def example_seed(*key: int) -> int:
    """A 63-bit seed from integers, well mixed (SeedSequence) so neighbouring keys are unrelated."""
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]).generate_state(1, np.uint64)[0] >> 1)


def capture() -> dict[str, Any]:
    """The global generators' states as tensors and ints (loadable with weights_only=True)."""
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": torch.from_numpy(np.array(py_state, dtype=np.int64)), "python_gauss": gauss,
             "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_pos": int(pos),
             "numpy_gauss": (int(has_gauss), float(cached)), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any]) -> None:
    random.setstate((3, tuple(state["python"].tolist()), state["python_gauss"]))
    has_gauss, cached = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserve_rng() -> Iterator[None]:
    """Run a block without moving Python's, numpy's or torch's (CPU and CUDA) global generators."""
    state = capture()
    try:
        yield
    finally:
        restore(state)


class SeededSamples(Dataset):
    """`dataset[(epoch, i)]` is `dataset[i]` drawn with generators seeded from (seed, epoch, i)."""

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, i = key
        seed = example_seed(self.seed, epoch, i)
        in_worker = get_worker_info() is not None  # a worker's own state matters to nobody
        with contextlib.nullcontext() if in_worker else preserve_rng():
            random.seed(seed)
            np.random.seed(seed & 0xFFFFFFFF)
            torch.default_generator.manual_seed(seed)  # the CPU generator only; CUDA's stay as they are
            return self.dataset[i]


class ResumableSampler(EpochSampler):
    """EpochSampler yielding (epoch, index) keys for SeededSamples; skips the batches of the current
    epoch a resumed run already trained on (Lightning restores its batch count, not the loader)."""

    def __init__(self, dataset: Any, get_epoch: Callable[[], int | None], get_done: Callable[[], int],
                 batch_size: int, **kwargs: Any) -> None:
        super().__init__(dataset, get_epoch, **kwargs)
        self.get_done, self.batch_size = get_done, batch_size

    def __iter__(self):
        indices = super().__iter__()  # sets self.epoch
        skip = self.get_done() * self.batch_size
        for n, i in enumerate(indices):
            if n >= skip:
                yield self.epoch, i


def batches_done_this_epoch(trainer: L.Trainer | None) -> int:
    """Training batches of the current epoch already run (non-zero only when resuming mid-epoch)."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)  # None outside a fit
    if loop is None:
        return 0
    done = loop.batch_progress.current.ready
    return int(done) if 0 < done < trainer.num_training_batches else 0


class RandomState(Callback):
    """Saves the global generators in each checkpoint; a resumed run continues their streams."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: dict[str, Any] | None = None
        self.outside: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return capture()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.loaded = dict(state_dict)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.loaded is not None:
            restore(self.loaded)
            self.loaded = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self.outside = capture()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.outside is not None:
            restore(self.outside)
            self.outside = None


class ModuleState(Callback):
    """Saves `training_state()` of every submodule that has one (CodebookHealth) in the checkpoint,
    beside the state_dict, and puts it back on resume. A checkpoint without it (older ones, the
    original's) leaves the modules as built."""

    KEY = "taming_module_state"

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[self.KEY] = {name: m.training_state() for name, m in pl_module.named_modules()
                                if callable(getattr(m, "training_state", None))}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(self.KEY) or {}
        for name, module in pl_module.named_modules():
            if name in saved and callable(getattr(module, "load_training_state", None)):
                module.load_training_state(saved[name])
