"""The second-stage GPT: a decoder-only transformer over code indices.

State-dict names are the original minGPT ones (`tok_emb`, `pos_emb`, `blocks.N.{ln1, ln2,
attn.{key, query, value, proj, mask}, mlp.0, mlp.2}`, `ln_f`, `head`), so the released
checkpoints load strictly. Attention runs through `F.scaled_dot_product_attention`.

One forward, `forward(idx, embeddings, targets, logits_from, cache=, pos=)`: without a cache, the
whole sequence (training, the original API); with a `KVCache`, the positions [pos, pos + T) given
every earlier one in the cache, whose keys and values it writes there (prefill and one-code steps
alike). Plain PyTorch: sampling runs it through the decoding engine (taming/transformer/decode/),
which owns the faster paths.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from taming.optim import fused


class KVCache:
    """Preallocated keys and values of every layer: `k[l]`, `v[l]` are (B, n_head, max_len, head_dim).

    The cache does not track how many positions are filled; the caller does (it passes `pos`).
    Rows of the batch are independent sequences that share positions. The decoding engine adds an
    int8 variant (taming/transformer/decode/attention.py: QuantizedCache).
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        shape = (batch, n_head, max_len, head_dim)
        # empty, not zeros: only written positions are ever read, and the sliding window opens many
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.max_len = max_len

    @property
    def batch(self) -> int:
        return self.k[0].shape[0]

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v (B, nh, T, hd) at positions [start, start + T) of `layer`."""
        self.k[layer][:, :, start:start + k.shape[2]] = k
        self.v[layer][:, :, start:start + v.shape[2]] = v

    def read(self, layer: int, end: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of positions [0, end) of `layer` in `dtype`: (B, nh, end, hd) each."""
        return self.k[layer][:, :, :end].to(dtype), self.v[layer][:, :, :end].to(dtype)

    def update(self, layer: int, pos: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, nh, T, hd) at positions [pos, pos + T) -> keys and values of [0, pos + T)
        (from 0, the given ones: unrounded by the cache's dtype)."""
        self.write(layer, pos, k, v)
        return (k, v) if pos == 0 else self.read(layer, pos + k.shape[2], k.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int, attn_pdrop: float,
                 resid_pdrop: float, n_unmasked: int):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"GPT: n_embd={n_embd} is not divisible by n_head={n_head}")
        self.n_head = n_head
        self.key = nn.Linear(n_embd, n_embd)
        self.query = nn.Linear(n_embd, n_embd)
        self.value = nn.Linear(n_embd, n_embd)
        self.attn_pdrop = attn_pdrop
        self.resid_drop = nn.Dropout(resid_pdrop)
        self.proj = nn.Linear(n_embd, n_embd)
        # 1 = may attend. Causal, except that the first n_unmasked positions see each other fully
        # (the original's option for a bidirectional conditioning prefix). Float and persistent
        # because the released checkpoints hold it.
        mask = torch.tril(torch.ones(block_size, block_size))
        if n_unmasked:
            mask[:n_unmasked, :n_unmasked] = 1
        self.register_buffer("mask", mask.view(1, 1, block_size, block_size))
        self.n_unmasked = n_unmasked

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, nh, T, hd)."""
        B, T, C = x.shape
        return x.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, pos: int = 0,
                queries_from: int = 0) -> torch.Tensor:
        """x (B, T, C) at positions [pos, pos + T) -> (B, T - queries_from, C): the outputs of positions
        from `queries_from` on (keys and values still come from all of x, and go to `cache`)."""
        B, T, C = x.shape
        q = self.heads(self.query(x[:, queries_from:] if queries_from else x))  # (B, nh, Tq, hd)
        k, v = self.heads(self.key(x)), self.heads(self.value(x))  # (B, nh, T, hd)
        if cache is not None:
            k, v = cache.update(layer, pos, k, v)  # (B, nh, pos + T, hd)
        y = self.attend(q, k, v, pos, queries_from, self.attn_pdrop if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T - queries_from, C)))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: int, queries_from: int = 0,
               dropout: float = 0.0) -> torch.Tensor:
        """q (B, nh, Tq, hd) at positions [end - Tq, end), k and v (B, nh, end, hd) -> (B, nh, Tq, hd)."""
        Tq, end = q.shape[2], k.shape[2]
        if pos == 0 and self.n_unmasked == 0 and not queries_from:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        if Tq == 1 and end - 1 >= self.n_unmasked:  # the last position sees every earlier one: no mask
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        allowed = self.mask[:, :, end - Tq:end, :end] > 0  # (1, 1, Tq, end)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout)


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int, attn_pdrop: float,
                 resid_pdrop: float, n_unmasked: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size, attn_pdrop, resid_pdrop, n_unmasked)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd),
            nn.GELU(),
            nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(resid_pdrop),
        )

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, pos: int = 0,
                queries_from: int = 0) -> torch.Tensor:
        """x (B, T, C) -> (B, T - queries_from, C): see CausalSelfAttention.forward."""
        h = self.attn(self.ln1(x), cache, layer, pos, queries_from)
        x = (x[:, queries_from:] if queries_from else x) + h
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """minGPT as in the original, with SDPA attention and a key/value cache."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int = 12, n_head: int = 8,
                 n_embd: int = 256, embd_pdrop: float = 0.0, resid_pdrop: float = 0.0,
                 attn_pdrop: float = 0.0, n_unmasked: int = 0):
        super().__init__()
        if n_unmasked > block_size:
            raise ValueError(f"GPT: n_unmasked={n_unmasked} exceeds block_size={block_size}")
        self.vocab_size, self.block_size = vocab_size, block_size
        self.n_layer, self.n_head, self.n_embd = n_layer, n_head, n_embd
        self.n_unmasked = n_unmasked
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, block_size, n_embd))
        self.drop = nn.Dropout(embd_pdrop)
        self.blocks = nn.Sequential(*[
            Block(n_embd, n_head, block_size, attn_pdrop, resid_pdrop, n_unmasked) for _ in range(n_layer)
        ])
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def get_block_size(self) -> int:
        return self.block_size

    def embed(self, idx: torch.Tensor | None, embeddings: torch.Tensor | None = None, pos: int = 0) -> torch.Tensor:
        """Token and position embeddings of positions [pos, pos + Te + T): (B, Te + T, C)."""
        parts = [] if embeddings is None else [embeddings]  # (B, Te, C) prepended, as the original
        if idx is not None:
            parts.append(self.tok_emb(idx))  # (B, T, C)
        if not parts:
            raise ValueError("GPT: give token indices, embeddings or both")
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        end = pos + x.shape[1]
        if end > self.block_size:
            raise ValueError(f"GPT: sequence reaches position {end} but block_size is {self.block_size}")
        return self.drop(x + self.pos_emb[:, pos:end])

    def forward(self, idx: torch.Tensor | None, embeddings: torch.Tensor | None = None,
                targets: torch.Tensor | None = None, logits_from: int = 0, *, cache: KVCache | None = None,
                pos: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) codes; embeddings (B, Te, C) prepended; -> logits (B, Te + T - logits_from, V) of the
        positions from `logits_from` on, and the mean CE loss against targets (same length) or None.

        With a cache, the inputs sit at positions [pos, pos + Te + T) after the ones the cache holds,
        and their keys and values are written into it. With logits_from > 0 the last block runs its
        queries, MLP and the head on those positions only: nothing after it reads the others (the
        transformer stage needs the image codes' logits only, sampling the last one's)."""
        x = self.embed(idx, embeddings, pos)
        if not 0 <= logits_from < x.shape[1]:
            raise ValueError(f"GPT: logits_from={logits_from} outside a sequence of {x.shape[1]}")
        if cache is not None and pos + x.shape[1] > cache.max_len:
            raise ValueError(f"GPT: positions up to {pos + x.shape[1]} do not fit a cache of {cache.max_len}")
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, pos, logits_from if i == last else 0)
        if last < 0:
            x = x[:, logits_from:]
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss

    def new_cache(self, batch: int, max_len: int | None = None, dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None) -> KVCache:
        """An empty cache for `batch` rows of up to `max_len` (default block_size) positions."""
        max_len = self.block_size if max_len is None else max_len
        if max_len > self.block_size:
            raise ValueError(f"GPT: cache of {max_len} positions exceeds block_size {self.block_size}")
        ref = self.head.weight
        return KVCache(self.n_layer, batch, self.n_head, max_len, self.n_embd // self.n_head,
                       dtype=dtype or ref.dtype, device=device or ref.device)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups as the original: decay on Linear weights only, none on biases, LayerNorm,
        embeddings and pos_emb."""
        decay, no_decay = [], []
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                if isinstance(module, nn.Linear) and name == "weight":
                    decay.append(p)
                else:
                    no_decay.append(p)
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizer(self, lr: float, weight_decay: float = 0.01,
                            betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
        """AdamW over `param_groups`, fused where this torch build supports it for the device."""
        return fused(torch.optim.AdamW, self.param_groups(weight_decay), lr=lr, betas=betas)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["GPT", "KVCache", "Block", "CausalSelfAttention", "num_params"]
