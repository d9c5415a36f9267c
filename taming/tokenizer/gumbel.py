"""GumbelQuantize: codes chosen by a (straight-through) Gumbel-softmax over `n_embed` logits.

`proj` (1x1 conv) maps features to logits, `embed` holds the code vectors; names and arguments
are the original's. In training a code is sampled with temperature `temperature` (set each step
by GumbelVQ's schedule). In eval mode the code is the argmax of the logits, with no noise, so
encoding is deterministic (the original sampled noise in eval too; its argmax is what its
released models' indices and our fixture use).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .codebook import CodebookHealth, is_training_step
from .quantize import CodeInfo, QuantizerOutput
from .remap import setup_remap, to_all, to_used


class GumbelQuantize(nn.Module):
    def __init__(self, num_hiddens: int, embedding_dim: int, n_embed: int, straight_through: bool = True,
                 kl_weight: float = 5e-4, temp_init: float = 1.0, use_vqinterface: bool = True,
                 remap: str | None = None, unknown_index: str | int = "random", *, dead_code_steps: int = 1000):
        super().__init__()
        self.embedding_dim, self.n_embed = embedding_dim, n_embed
        self.straight_through = straight_through
        self.temperature = temp_init
        self.kl_weight = kl_weight
        self.use_vqinterface = use_vqinterface
        self.proj = nn.Conv2d(num_hiddens, n_embed, 1)
        self.embed = nn.Embedding(n_embed, embedding_dim)
        setup_remap(self, remap, unknown_index, n_embed)
        self.health = CodebookHealth(n_embed, dead_after=dead_code_steps)

    def forward(self, z: torch.Tensor, temp: float | None = None, return_logits: bool = False):
        """z: (B, num_hiddens, H, W) -> (z_q (B, embedding_dim, H, W), kl loss, (None, None, ind (B, H, W)))."""
        temp = self.temperature if temp is None else temp
        logits = self.proj(z)  # (B, n_embed, H, W)
        with torch.autocast(z.device.type, enabled=False):
            logits32 = logits.float()
            if self.remap is not None:  # only the used codes can be chosen
                allowed = logits32[:, self.used]
            else:
                allowed = logits32
            if self.training:
                one_hot = F.gumbel_softmax(allowed, tau=temp, dim=1, hard=self.straight_through)
            else:
                one_hot = F.one_hot(allowed.argmax(1), allowed.shape[1]).permute(0, 3, 1, 2).to(allowed.dtype)
            if self.remap is not None:
                full = torch.zeros_like(logits32)
                full[:, self.used] = one_hot
                one_hot = full
            z_q = torch.einsum("bnhw,nd->bdhw", one_hot, self.embed.weight.float())
            # KL to a uniform prior over codes, which keeps many codes in use
            qy = F.softmax(allowed, dim=1)
            diff = self.kl_weight * torch.sum(qy * torch.log(qy * self.n_embed + 1e-10), dim=1).mean()
        ind = one_hot.argmax(1)  # (B, H, W)
        if is_training_step(self):
            self.health.update(ind)
        if self.remap is not None:
            ind = to_used(ind, self.used, self.unknown_index, self.re_embed)
        if self.use_vqinterface:
            if return_logits:
                return z_q, diff, CodeInfo(None, None, ind), logits
            return QuantizerOutput(z_q, diff, CodeInfo(None, None, ind))
        return z_q, diff, ind

    def get_codebook_entry(self, indices: torch.Tensor, shape) -> torch.Tensor:
        """indices with b*h*w values -> (b, c, h, w) for shape=(b, h, w, c)."""
        b, h, w, _ = shape
        if indices.numel() != b * h * w:
            raise ValueError(f"get_codebook_entry: {indices.numel()} indices do not fill shape {tuple(shape)}")
        indices = indices.reshape(b, h, w)
        if self.remap is not None:
            indices = to_all(indices, self.used)
        one_hot = F.one_hot(indices, self.n_embed).permute(0, 3, 1, 2).to(self.embed.weight.dtype)
        return torch.einsum("bnhw,nd->bdhw", one_hot, self.embed.weight)

    def codebook_stats(self) -> dict[str, float]:
        return self.health.stats()
