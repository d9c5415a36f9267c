"""EMAVectorQuantizer: codes updated by exponential moving averages instead of gradients.

The original's class failed on construction (it referenced undefined names); this one works with
the same arguments and the original's state_dict keys: `embedding.weight`, `embedding.cluster_size`,
`embedding.embed_avg`. They are buffers here (the original used parameters with
requires_grad=False): same keys, and no optimizer or gradient sync ever touches them.

Update per training step (van den Oord et al. 2017, appendix): with one-hot assignments E (N, K),
  cluster_size <- decay * cluster_size + (1 - decay) * E.sum(0)
  embed_avg    <- decay * embed_avg    + (1 - decay) * E^T z
  weight        = embed_avg / laplace_smoothed(cluster_size)
Counts and sums are summed over data-parallel ranks first, so all ranks keep the same codebook.
Only training forwards with autograd on update the codebook (see codebook.is_training_step).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .codebook import CodebookHealth, _all_reduce_sum, is_training_step
from .quantize import CodeInfo, QuantizerOutput, nearest_code, to_image_layout
from .remap import setup_remap, to_all, to_used


class EmbeddingEMA(nn.Module):
    def __init__(self, num_tokens: int, codebook_dim: int, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        self.decay, self.eps = decay, eps
        self.update = True  # the original's switch to freeze the codebook
        weight = torch.randn(num_tokens, codebook_dim)
        self.register_buffer("weight", weight)
        self.register_buffer("cluster_size", torch.zeros(num_tokens))
        self.register_buffer("embed_avg", weight.clone())

    def forward(self, embed_id: torch.Tensor) -> torch.Tensor:
        return F.embedding(embed_id, self.weight)

    @torch.no_grad()
    def ema_step(self, counts: torch.Tensor, embed_sum: torch.Tensor) -> None:
        """counts (K,), embed_sum (K, D): this step's assignments."""
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(embed_sum, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        k = self.cluster_size.shape[0]
        # Laplace smoothing: a code with no assignments keeps a small non-zero count (no 0/0)
        smoothed = (self.cluster_size + self.eps) / (n + k * self.eps) * n
        self.weight.copy_(self.embed_avg / smoothed.unsqueeze(1))


class EMAVectorQuantizer(nn.Module):
    def __init__(self, n_embed: int, embedding_dim: int, beta: float, decay: float = 0.99, eps: float = 1e-5,
                 remap: str | None = None, unknown_index: str | int = "random", *,
                 restart_unused_codes: int | None = None, dead_code_steps: int = 1000):
        super().__init__()
        self.codebook_dim = self.e_dim = embedding_dim
        self.num_tokens = self.n_e = n_embed
        self.beta = beta
        self.embedding = EmbeddingEMA(n_embed, embedding_dim, decay, eps)
        setup_remap(self, remap, unknown_index, n_embed)
        self.health = CodebookHealth(n_embed, dead_after=dead_code_steps, restart_after=restart_unused_codes)

    def forward(self, z: torch.Tensor):
        """z: (B, D, H, W) -> (z_q, loss, (perplexity, one-hot encodings (N, K), indices (N,)))."""
        b, _, h, w = z.shape
        with torch.autocast(z.device.type, enabled=False):
            z_flat = z.float().permute(0, 2, 3, 1).reshape(-1, self.codebook_dim)  # (N, D)
            indices = nearest_code(z_flat.detach(), self.embedding.weight)
            z_q = self.embedding(indices)  # (N, D), from the codebook before this step's update
            encodings = F.one_hot(indices, self.num_tokens).to(z_flat.dtype)  # (N, K)
            avg_probs = encodings.mean(0)
            perplexity = torch.exp(-torch.sum(avg_probs * torch.log(avg_probs + 1e-10)))
            if is_training_step(self) and self.embedding.update:
                counts = _all_reduce_sum(encodings.sum(0))
                embed_sum = _all_reduce_sum(encodings.t() @ z_flat.detach())
                self.embedding.ema_step(counts, embed_sum)
            loss = self.beta * F.mse_loss(z_q.detach(), z_flat)  # commitment only: codes are not learned by SGD
            z_q = z_flat + (z_q - z_flat).detach()
        if is_training_step(self):
            self.health.update(indices)
            moved = self.health.restart(self.embedding.weight, z_flat.detach())
            if moved.numel():  # restarted codes start a fresh average at their new place
                self.embedding.embed_avg[moved] = self.embedding.weight[moved]
                self.embedding.cluster_size[moved] = 1.0
        if self.remap is not None:
            indices = to_used(indices.reshape(b, -1), self.used, self.unknown_index, self.re_embed).reshape(-1)
        return QuantizerOutput(to_image_layout(z_q, b, h, w, like=z), loss, CodeInfo(perplexity, encodings, indices))

    def get_codebook_entry(self, indices: torch.Tensor, shape=None) -> torch.Tensor:
        """indices (B*h*w values) -> (b, c, h, w) for shape=(b, h, w, c), else (N, c)."""
        if self.remap is not None:
            batch = shape[0] if shape is not None else 1
            indices = to_all(indices.reshape(batch, -1), self.used)
        z_q = self.embedding(indices.reshape(-1))
        if shape is not None:
            z_q = z_q.view(shape).permute(0, 3, 1, 2).contiguous()
        return z_q

    def codebook_stats(self) -> dict[str, float]:
        return self.health.stats()
