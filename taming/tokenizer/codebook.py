"""Codebook health (usage, perplexity, dead codes) and the optional restart of dead codes.

Codebook collapse (a few codes used, the rest never chosen again) is the most common tokenizer
failure. `CodebookHealth` counts, per code, how many training steps have passed since it was last
chosen. Its buffers are non-persistent, so models that use it keep the original state_dict keys and
load the original checkpoints strictly; a training checkpoint carries them beside the weights
(`training_state`, saved and restored by taming.training.determinism.ModuleState), so a resumed run
restarts the same codes at the same steps as one that never stopped.

Restart (off unless `restart_after` is set): a code unused for `restart_after` training steps is
moved onto a randomly chosen encoder output of the current batch, so it lies where the data is
and gets chosen again (as in Jukebox and ViT-VQGAN-style training recipes).
"""
from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.distributed as dist
from torch import nn

from taming.config_types import Between

CodebookSize = Annotated[int, Between(1, 2**22)]  # n_embed as a config gives it: checked before allocation


def is_training_step(module: nn.Module) -> bool:
    """A training forward: training mode with autograd on. Forwards under no_grad in training mode
    (image logging on one rank, quick checks) neither count as steps nor join the collective
    all_reduce, which would wait forever for ranks that do not run them."""
    return module.training and torch.is_grad_enabled()


def perplexity(counts: torch.Tensor) -> float:
    """exp(entropy) of the code histogram: 1 when one code is used, n when n codes are used equally."""
    p = counts.double() / counts.sum().clamp_min(1)
    return float(torch.exp(-(p * torch.log(p + 1e-10)).sum()))


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over data-parallel ranks, so every rank sees the same usage and restarts the same codes."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = t.clone()
        dist.all_reduce(t)
    return t


class CodebookHealth(nn.Module):
    """Per-code usage tracking for a codebook of `n_codes` entries.

    dead_after: steps without use after which a code is reported dead.
    restart_after: if set, codes unused for this many training steps are restarted by `restart`.
    """

    def __init__(self, n_codes: int, dead_after: int = 1000, restart_after: int | None = None):
        super().__init__()
        if restart_after is not None and restart_after < 1:
            raise ValueError(f"restart_unused_codes must be a positive number of steps, got {restart_after}")
        self.n_codes = n_codes
        self.dead_after = dead_after
        self.restart_after = restart_after
        self.register_buffer("steps_unused", torch.zeros(n_codes, dtype=torch.long), persistent=False)
        self.register_buffer("last_counts", torch.zeros(n_codes, dtype=torch.long), persistent=False)
        self.restarted_total = 0

    @torch.no_grad()
    def update(self, indices: torch.Tensor) -> torch.Tensor:
        """Record one training step's chosen codes (any shape, values in [0, n_codes)); returns counts."""
        counts = torch.bincount(indices.reshape(-1), minlength=self.n_codes)[: self.n_codes]
        counts = _all_reduce_sum(counts.to(self.last_counts.device))
        self.last_counts.copy_(counts)
        self.steps_unused.add_(1).masked_fill_(counts > 0, 0)
        return counts

    @torch.no_grad()
    def restart(self, codebook: torch.Tensor, z_flat: torch.Tensor) -> torch.Tensor:
        """Move codes unused for `restart_after` steps onto random rows of z_flat (N, D).

        codebook: (n_codes, D) tensor updated in place. Returns the indices of the moved codes.
        """
        none = torch.zeros(0, dtype=torch.long, device=codebook.device)
        if self.restart_after is None or z_flat.numel() == 0:
            return none
        dead = torch.nonzero(self.steps_unused >= self.restart_after).flatten()
        if dead.numel() == 0:
            return none
        # With more dead codes than batch vectors, reuse vectors; a little noise keeps them apart.
        pick = torch.randint(0, z_flat.shape[0], (dead.numel(),), device=z_flat.device)
        new = z_flat[pick].detach().to(codebook.dtype)
        new = new + 1e-3 * new.std().clamp_min(1e-6) * torch.randn_like(new)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.broadcast(new, src=0)  # all ranks keep identical codebooks
        codebook[dead.to(codebook.device)] = new.to(codebook.device)
        self.steps_unused[dead] = 0
        self.restarted_total += int(dead.numel())
        return dead

    def training_state(self) -> dict[str, torch.Tensor | int]:
        """What a resumed run needs to continue exactly: the counters and the restart total."""
        return {"steps_unused": self.steps_unused.detach().cpu().clone(),
                "last_counts": self.last_counts.detach().cpu().clone(), "restarted_total": self.restarted_total}

    def load_training_state(self, state: dict[str, torch.Tensor | int]) -> None:
        for name in ("steps_unused", "last_counts"):
            value = torch.as_tensor(state[name])
            if value.shape != getattr(self, name).shape:
                raise ValueError(f"codebook health {name}: the checkpoint has {tuple(value.shape)}, "
                                 f"this codebook {tuple(getattr(self, name).shape)}")
            getattr(self, name).copy_(value)
        self.restarted_total = int(state["restarted_total"])

    def stats(self) -> dict[str, float]:
        """Floats to log: usage (fraction of codes chosen in the last step), perplexity of the last
        step's codes, dead codes (unused for `dead_after` steps, as count and fraction)."""
        counts = self.last_counts
        used = int((counts > 0).sum())
        dead = int((self.steps_unused >= self.dead_after).sum())
        return {
            "usage": used / self.n_codes,
            "codes_used": float(used),
            "perplexity": perplexity(counts) if counts.sum() > 0 else math.nan,
            "dead_codes": float(dead),
            "dead_fraction": dead / self.n_codes,
            "restarted_total": float(self.restarted_total),
        }
