"""The original's first VectorQuantizer (before VectorQuantizer2), kept for old checkpoints.

Differences from VectorQuantizer2: it returns the one-hot `min_encodings` (N, n_e), the batch
perplexity, and indices of shape (N, 1); the loss always uses the legacy beta placement.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .quantize import CodeInfo, QuantizerOutput, nearest_code, to_image_layout


class VectorQuantizer(nn.Module):
    def __init__(self, n_e: int, e_dim: int, beta: float):
        super().__init__()
        self.n_e, self.e_dim, self.beta = n_e, e_dim, beta
        self.embedding = nn.Embedding(n_e, e_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_e, 1.0 / n_e)

    def forward(self, z: torch.Tensor):
        """z: (B, e_dim, H, W) -> (z_q, loss, (perplexity, min_encodings (N, n_e), indices (N, 1)))."""
        b, _, h, w = z.shape
        with torch.autocast(z.device.type, enabled=False):
            z_flat = z.float().permute(0, 2, 3, 1).reshape(-1, self.e_dim)  # (N, e_dim)
            weight = self.embedding.weight.float()
            indices = nearest_code(z_flat.detach(), weight.detach()).unsqueeze(1)  # (N, 1)
            min_encodings = torch.zeros(indices.shape[0], self.n_e, device=z.device, dtype=weight.dtype)
            min_encodings.scatter_(1, indices, 1)
            z_q = min_encodings @ weight  # (N, e_dim); the original's one-hot matmul
            loss = torch.mean((z_q.detach() - z_flat) ** 2) + self.beta * torch.mean((z_q - z_flat.detach()) ** 2)
            z_q = z_flat + (z_q - z_flat).detach()
            e_mean = min_encodings.mean(0)
            perplexity = torch.exp(-torch.sum(e_mean * torch.log(e_mean + 1e-10)))
        return QuantizerOutput(to_image_layout(z_q, b, h, w, like=z), loss,
                               CodeInfo(perplexity, min_encodings, indices))

    def get_codebook_entry(self, indices: torch.Tensor, shape=None) -> torch.Tensor:
        """indices (N,) or (N, 1) -> (b, c, h, w) for shape=(b, h, w, c), else (N, c)."""
        one_hot = F.one_hot(indices.reshape(-1).long(), self.n_e).to(self.embedding.weight.dtype)
        z_q = one_hot @ self.embedding.weight
        if shape is not None:
            z_q = z_q.view(shape).permute(0, 3, 1, 2).contiguous()
        return z_q
