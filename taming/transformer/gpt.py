"""The second-stage GPT: a decoder-only transformer over code indices.

State-dict names are the original minGPT ones (`tok_emb`, `pos_emb`, `blocks.N.{ln1, ln2,
attn.{key, query, value, proj, mask}, mlp.0, mlp.2}`, `ln_f`, `head`), so the released
checkpoints load strictly. Attention runs through `F.scaled_dot_product_attention`.

Two ways to run it:
- `forward(idx, embeddings, targets)`: the whole sequence at once (training, the original API);
- `forward_with_cache(idx, cache, start_pos)`: a chunk of positions `[start_pos, start_pos + t)`
  whose keys/values are written into a preallocated `KVCache`; attention reads every cached
  position before it. Prefill and one-token decoding are both this call (see taming/sampling.py).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from taming.optim import fused
from taming.transformer.cpu_attention import attend_step, quantize_vectors
from taming.transformer.decoding import Linear, decoding_weights


class KVCache:
    """Preallocated keys and values of every layer: `k[l]`, `v[l]` are (B, n_head, max_len, head_dim).

    Positions are written by `GPT.forward_with_cache`; the cache does not track how many are
    filled, the caller does (it passes `start_pos`). Rows of the batch are independent sequences
    that share positions.

    dtype torch.int8 (CPU sampling, taming.hardware.decode_plan): every key and value vector of
    head_dim numbers is stored as int8 times one float32 scale (its largest magnitude / 127, in
    `k_scale[l]`, `v_scale[l]` (B, n_head, max_len, 1)): 1.06 bytes a number instead of 4, for the
    one-query attention that reads the whole cache at every decoded code.
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        shape = (batch, n_head, max_len, head_dim)
        # empty, not zeros: only written positions are ever read, and the sliding window opens many
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.quantized = dtype == torch.int8
        scales = (batch, n_head, max_len, 1) if self.quantized else (0,)
        self.k_scale = [torch.empty(scales, device=device) for _ in range(n_layer)]
        self.v_scale = [torch.empty(scales, device=device) for _ in range(n_layer)]
        self.max_len = max_len

    @property
    def batch(self) -> int:
        return self.k[0].shape[0]

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v (B, nh, T, hd) at positions [start, start + T) of `layer`."""
        end = start + k.shape[2]
        for x, store, scale in ((k, self.k, self.k_scale), (v, self.v, self.v_scale)):
            if self.quantized:
                x, scale[layer][:, :, start:end] = quantize_vectors(x)  # scale (B, nh, T, 1)
            store[layer][:, :, start:end] = x

    def read(self, layer: int, end: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of positions [0, end) of `layer` in `dtype`: (B, nh, end, hd) each."""
        k, v = self.k[layer][:, :, :end], self.v[layer][:, :, :end]
        if self.quantized:
            return k.to(dtype) * self.k_scale[layer][:, :, :end], v.to(dtype) * self.v_scale[layer][:, :, :end]
        return k.to(dtype), v.to(dtype)


class CausalSelfAttention(nn.Module):
    # while decoding (decoding.py): query, key and value as one reduced-precision GEMM for inputs of
    # up to _fused_rows rows (one call instead of three: at batch 4 a call costs more than its bytes)
    DECODE_FUSED = ("query", "key", "value")
    _fused: Callable[[torch.Tensor], torch.Tensor] | None = None
    _fused_rows = 0

    def __init__(self, n_embd: int, n_head: int, block_size: int, attn_pdrop: float,
                 resid_pdrop: float, n_unmasked: int):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"GPT: n_embd={n_embd} is not divisible by n_head={n_head}")
        self.n_head = n_head
        self.key = Linear(n_embd, n_embd)
        self.query = Linear(n_embd, n_embd)
        self.value = Linear(n_embd, n_embd)
        self.attn_pdrop = attn_pdrop
        self.resid_drop = nn.Dropout(resid_pdrop)
        self.proj = Linear(n_embd, n_embd)
        # 1 = may attend. Causal, except that the first n_unmasked positions see each other fully
        # (the original's option for a bidirectional conditioning prefix). Float and persistent
        # because the released checkpoints hold it.
        mask = torch.tril(torch.ones(block_size, block_size))
        if n_unmasked:
            mask[:n_unmasked, :n_unmasked] = 1
        self.register_buffer("mask", mask.view(1, 1, block_size, block_size))
        self.n_unmasked = n_unmasked

    def _heads(self, x: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
        B, T, C = x.shape
        return lin(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hd)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                start_pos: int = 0, queries_from: int = 0) -> torch.Tensor:
        """x (B, T, C) at positions [start_pos, start_pos + T) -> (B, T - queries_from, C): the outputs
        of positions from `queries_from` on (keys and values still come from all of x)."""
        B, T, C = x.shape  # (B, T, C)
        dropout = self.attn_pdrop if self.training else 0.0
        if cache is not None and T == 1 and not isinstance(start_pos, torch.Tensor) and start_pos > 0 \
                and start_pos >= self.n_unmasked and x.device.type == "cpu" and cache.k[layer].dtype != x.dtype \
                and not dropout:
            # one code over a bf16 or int8 cache on the CPU: one native call writes its key and
            # value and reads the cache at its own size (cpu_attention.py)
            scales = (cache.k_scale[layer], cache.v_scale[layer]) if cache.quantized else ()
            y = attend_step(self._qkv(x), cache.k[layer], cache.v[layer], start_pos, *scales)  # (B, 1, C)
            return self.resid_drop(self.proj(y.to(x.dtype)))
        q = self._heads(x[:, queries_from:] if queries_from else x, self.query)  # (B, nh, T - queries_from, hd)
        k, v = self._heads(x, self.key), self._heads(x, self.value)  # (B, nh, T, hd)
        out_dtype = q.dtype
        if isinstance(start_pos, torch.Tensor):  # fixed shapes for CUDA graphs (static_decode.py)
            return self.resid_drop(self.proj(self._static_step(q, k, v, cache, layer, start_pos).to(out_dtype)))
        end = start_pos + T
        if cache is not None:
            cache.write(layer, start_pos, k, v)
            if start_pos > 0:  # earlier positions from the cache (from 0, k and v hold them all, unrounded)
                k, v = cache.read(layer, end, q.dtype)  # (B, nh, end, hd)
        y = self._attend(q, k, v, start_pos, queries_from, dropout)  # (B, nh, Tq, hd)
        y = y.transpose(1, 2).reshape(B, T - queries_from, C).to(out_dtype)  # (B, Tq, C)
        return self.resid_drop(self.proj(y))

    def _qkv(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> [query | key | value] (B, T, 3C): the fused decoding copy where it serves x."""
        if self._fused is not None and not torch.is_grad_enabled() and x.shape[:-1].numel() <= self._fused_rows:
            return self._fused(x)
        return torch.cat([self.query(x), self.key(x), self.value(x)], dim=-1)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start_pos: int, queries_from: int,
                dropout: float) -> torch.Tensor:
        """q (B, nh, Tq, hd) at positions [end - Tq, end), k and v (B, nh, end, hd) -> (B, nh, Tq, hd)."""
        Tq, end = q.shape[2], k.shape[2]
        if start_pos == 0 and self.n_unmasked == 0 and not queries_from:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        if Tq == 1 and end - 1 >= self.n_unmasked:  # the last position sees every earlier one: no mask
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        allowed = self.mask[:, :, end - Tq:end, :end] > 0  # (1, 1, Tq, end)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout)

    def _static_step(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache, layer: int,
                     pos: torch.Tensor) -> torch.Tensor:
        """One position at device tensor pos (1,): q, k, v (B, nh, 1, hd) -> (B, 1, C). Its key and
        value go to the cache at pos, and the query attends over the whole cache with the positions
        after pos masked: the same shapes at every step, so one captured graph replays them all."""
        B, nh, _, hd = q.shape
        cache.k[layer].index_copy_(2, pos, k.to(cache.k[layer].dtype))
        cache.v[layer].index_copy_(2, pos, v.to(cache.v[layer].dtype))
        k, v = cache.k[layer], cache.v[layer]  # (B, nh, max_len, hd)
        allowed = (torch.arange(cache.max_len, device=pos.device) <= pos).view(1, 1, 1, -1)  # (1, 1, 1, max_len)
        y = F.scaled_dot_product_attention(q.to(k.dtype), k, v, attn_mask=allowed)  # (B, nh, 1, hd)
        return y.transpose(1, 2).reshape(B, 1, nh * hd)


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int, attn_pdrop: float,
                 resid_pdrop: float, n_unmasked: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size, attn_pdrop, resid_pdrop, n_unmasked)
        self.mlp = nn.Sequential(
            Linear(n_embd, 4 * n_embd),
            nn.GELU(),
            Linear(4 * n_embd, n_embd),
            nn.Dropout(resid_pdrop),
        )

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                start_pos: int = 0, queries_from: int = 0) -> torch.Tensor:
        """x (B, T, C) -> (B, T - queries_from, C): see CausalSelfAttention.forward."""
        h = self.attn(self.ln1(x), cache, layer, start_pos, queries_from)
        x = (x[:, queries_from:] if queries_from else x) + h
        return x + self._mlp(self.ln2(x))

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        """self.mlp(x); in a bf16 prefill the GELU runs inside the first GEMM (decoding.py)."""
        first, act, second, drop = self.mlp
        hidden = first.forward_gelu(x) if isinstance(act, nn.GELU) and act.approximate == "none" else None
        if hidden is None:
            return self.mlp(x)
        return drop(second(hidden).to(x.dtype))  # (B, T, C)


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
        self.head = Linear(n_embd, vocab_size, bias=False)
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

    def _embed(self, idx: torch.Tensor | None, embeddings: torch.Tensor | None, start_pos: int) -> torch.Tensor:
        parts = [] if embeddings is None else [embeddings]  # (B, Te, C) prepended, as the original
        if idx is not None:
            parts.append(self.tok_emb(idx))  # (B, T, C)
        if not parts:
            raise ValueError("GPT: give token indices, embeddings or both")
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        if isinstance(start_pos, torch.Tensor):  # one position given as a device tensor (1,)
            return self.drop(x + self.pos_emb[:, start_pos])
        end = start_pos + x.shape[1]
        if end > self.block_size:
            raise ValueError(f"GPT: sequence reaches position {end} but block_size is {self.block_size}")
        return self.drop(x + self.pos_emb[:, start_pos:end])

    def forward(self, idx: torch.Tensor | None, embeddings: torch.Tensor | None = None,
                targets: torch.Tensor | None = None, logits_from: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) codes; embeddings (B, Te, C) prepended; -> logits (B, Te + T - logits_from, V) of the
        positions from `logits_from` on, and the mean CE loss against targets (same length) or None.

        With logits_from > 0 the last block runs its queries, MLP and the head on those positions
        only: nothing after it reads the others (the transformer stage needs logits of the image
        codes only, half the sequence). Same values as slicing the full logits."""
        x = self._embed(idx, embeddings, 0)
        if not 0 <= logits_from < x.shape[1]:
            raise ValueError(f"GPT: logits_from={logits_from} outside a sequence of {x.shape[1]}")
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, queries_from=logits_from if i == last else 0)
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

    def forward_with_cache(self, idx: torch.Tensor | None, cache: KVCache, start_pos: int,
                           embeddings: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """Run positions [start_pos, start_pos + T) given every earlier position in `cache`.

        idx (B, T) codes (embeddings (B, Te, C) go before them, as in `forward`); writes their
        keys/values into `cache` and returns logits (B, T', V), or (B, V) for the last position only
        when `last_only` (what sampling needs; it skips the head on the others).
        start_pos may be a device tensor (1,) for one position (T = 1): then every shape is the same
        at every position (see taming/transformer/static_decode.py).
        """
        x = self._embed(idx, embeddings, start_pos)
        if not isinstance(start_pos, torch.Tensor) and start_pos + x.shape[1] > cache.max_len:
            raise ValueError(f"GPT: positions up to {start_pos + x.shape[1]} do not fit a cache of {cache.max_len}")
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer, start_pos)
        if last_only:
            x = x[:, -1]
        return self.head(self.ln_f(x))

    def decoding(self, precision: str = "fp32", rows: int = 1):
        """Context for decoding `rows` rows one position at a time: faster few-row matmuls on the
        CPU (column-major float32 weights, or packed bf16 copies); see taming/transformer/decoding.py."""
        return decoding_weights(self, precision, rows)

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
