"""VectorQuantizer2: nearest-codebook-entry quantization with a straight-through gradient.

Behaves as the original's (same arguments, outputs, state_dict keys `embedding.weight` and, with
`remap`, `used`). Off-by-default options beyond the original:

- codebook health (always tracked in training, no state_dict keys): `codebook_stats()`;
- `restart_unused_codes=N`: codes unused for N training steps move onto encoder outputs;
- factorized codes: `codebook_dim < e_dim` looks codes up in a low-dimensional space through
  `in_proj`/`out_proj` (Linear layers, only present with this option), and `l2_normalize=True`
  compares codes by cosine similarity (both as in ViT-VQGAN and LlamaGen).

Distances and the codebook loss are computed in float32 even under autocast: in bf16 nearby codes
tie and the argmin flips.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .codebook import CodebookHealth, is_training_step
from .remap import setup_remap, to_all, to_used


class CodeInfo(NamedTuple):
    """The original's third output: perplexity and one-hot encodings (None where not computed) and
    the code indices ((B*h*w,), or (B, h, w) with sane_index_shape)."""
    perplexity: Optional[torch.Tensor]
    encodings: Optional[torch.Tensor]
    indices: torch.Tensor


class QuantizerOutput(NamedTuple):
    """What every quantizer returns; unpacks as the original `(quant, loss, (perplexity, encodings, indices))`."""
    quant: torch.Tensor  # (B, e_dim, h, w)
    loss: torch.Tensor  # the codebook (or KL) term of the training loss
    info: CodeInfo


def nearest_code(z_flat: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """argmin_j |z_i - e_j|^2 for z_flat (N, D), codebook (K, D) -> (N,) long.

    Expanded as |z|^2 + |e|^2 - 2 z.e as in the original, so ties resolve the same way.
    """
    d = (z_flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1)
         - 2 * torch.einsum("nd,dk->nk", z_flat, codebook.t()))
    return d.argmin(1)


def to_image_layout(flat: torch.Tensor, b: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(B*H*W, C) -> (B, C, H, W); stays channels_last (no copy) when `like` is channels_last."""
    out = flat.reshape(b, h, w, -1).permute(0, 3, 1, 2)
    if like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        return out
    return out.contiguous()


class VectorQuantizer2(nn.Module):
    def __init__(self, n_e: int, e_dim: int, beta: float, remap: str | None = None,
                 unknown_index: str | int = "random", sane_index_shape: bool = False, legacy: bool = True,
                 *, codebook_dim: int | None = None, l2_normalize: bool = False,
                 restart_unused_codes: int | None = None, dead_code_steps: int = 1000):
        super().__init__()
        self.n_e, self.e_dim, self.beta = n_e, e_dim, beta
        self.legacy = legacy  # True: the original's beta on the codebook term (kept for old checkpoints)
        self.sane_index_shape = sane_index_shape
        self.l2_normalize = l2_normalize

        self.codebook_dim = e_dim if codebook_dim is None else codebook_dim
        if self.codebook_dim != e_dim:
            self.in_proj = nn.Linear(e_dim, self.codebook_dim)
            self.out_proj = nn.Linear(self.codebook_dim, e_dim)
        self.embedding = nn.Embedding(n_e, self.codebook_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_e, 1.0 / n_e)

        setup_remap(self, remap, unknown_index, n_e)
        self.health = CodebookHealth(n_e, dead_after=dead_code_steps, restart_after=restart_unused_codes)

    # -- lookup space -------------------------------------------------------------------------
    def _factorized(self) -> bool:
        return self.codebook_dim != self.e_dim

    def lookup_codebook(self) -> torch.Tensor:
        """(n_e, codebook_dim) codebook in the space distances are measured in."""
        w = self.embedding.weight.float()
        return F.normalize(w, dim=1) if self.l2_normalize else w

    def _to_lookup(self, z_flat: torch.Tensor) -> torch.Tensor:
        if self._factorized():
            z_flat = F.linear(z_flat, self.in_proj.weight.float(), self.in_proj.bias.float())
        return F.normalize(z_flat, dim=1) if self.l2_normalize else z_flat

    def _from_lookup(self, zq: torch.Tensor) -> torch.Tensor:
        if self._factorized():
            zq = F.linear(zq, self.out_proj.weight.float(), self.out_proj.bias.float())
        return zq

    # -- forward ------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor, temp=None, rescale_logits: bool = False, return_logits: bool = False):
        """z: (B, e_dim, H, W) -> (z_q (B, e_dim, H, W), loss, (perplexity, min_encodings, indices)).

        indices: (B*H*W,) long, (B, H, W) with sane_index_shape, (B*H*W, 1) with remap (original).
        perplexity and min_encodings are None as in the original; see codebook_stats().
        """
        if temp not in (None, 1.0) or rescale_logits or return_logits:
            raise ValueError("VectorQuantizer2 takes no temperature, rescale_logits or return_logits "
                             "(only for interface compatibility with GumbelQuantize)")
        b, _, h, w = z.shape
        with torch.autocast(z.device.type, enabled=False):
            z32 = z.float()
            z_flat = z32.permute(0, 2, 3, 1).reshape(-1, self.e_dim)  # (N, e_dim), N = B*H*W
            z_look = self._to_lookup(z_flat)  # (N, codebook_dim)
            codebook = self.lookup_codebook()
            indices = nearest_code(z_look.detach(), codebook.detach())  # (N,)
            zq_look = F.embedding(indices, codebook)  # (N, codebook_dim)

            commit = torch.mean((zq_look.detach() - z_look) ** 2)  # pulls the encoder to its code
            codebook_term = torch.mean((zq_look - z_look.detach()) ** 2)  # pulls the code to the encoder
            if self.legacy:
                loss = commit + self.beta * codebook_term
            else:
                loss = self.beta * commit + codebook_term

            # straight-through: forward value is the code, gradient goes to the encoder output
            zq_look = z_look + (zq_look - z_look).detach()
            z_q = to_image_layout(self._from_lookup(zq_look), b, h, w, like=z)

        if is_training_step(self):
            self.health.update(indices)
            self.health.restart(self.embedding.weight.data, z_look.detach())

        if self.remap is not None:
            indices = to_used(indices.reshape(b, -1), self.used, self.unknown_index, self.re_embed)
            indices = indices.reshape(-1, 1)
        if self.sane_index_shape:
            indices = indices.reshape(b, h, w)
        return QuantizerOutput(z_q, loss, CodeInfo(None, None, indices))

    # -- codes -> vectors ---------------------------------------------------------------------
    def get_codebook_entry(self, indices: torch.Tensor, shape=None) -> torch.Tensor:
        """indices (any shape, B*h*w values) -> (b, c, h, w) for shape=(b, h, w, c), else (N, c)."""
        if self.remap is not None:
            batch = shape[0] if shape is not None else 1
            indices = to_all(indices.reshape(batch, -1), self.used).reshape(-1)
        z_q = self._from_lookup(F.embedding(indices.reshape(-1), self.lookup_codebook()))
        z_q = z_q.to(self.embedding.weight.dtype)
        if shape is not None:
            z_q = z_q.view(shape).permute(0, 3, 1, 2).contiguous()
        return z_q

    def codebook_stats(self) -> dict[str, float]:
        """Codebook health of the last training step (usage, perplexity, dead codes)."""
        return self.health.stats()
