"""The decoding engine: how one sampling call runs the GPT under a `DecodePlan` (taming/precision.py).

A `Decoder` is built per call for `rows` rows. It owns what it runs and changes nothing of the
model (so calls in several threads at different precisions never meet): the weights (`Weights`:
the model's own or copies, weights.py), the caches it makes (`new_cache`: the plan's dtype; int8 is
a QuantizedCache), and the two ways it computes:
- `forward(idx, cache, pos)`: positions [pos, pos + T) over a cache -> logits of the last: the GPT's
  computation with the plan's weights (tests compare it with `GPT.forward`); one code over a reduced
  cache on the CPU attends through the native kernel (attention.py);
- `stepper(cache)`: `generate`'s one-code step by the plan's backend: "native" (the whole step in
  one C call, native.py), "cuda_graph" (a static cache and one CUDA graph per call, graph.py), or
  "pytorch" (`forward`), which also serves where the others do not apply.
Dropout never runs here: decoding is inference, whatever mode the model is in.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch

from taming.precision import DecodePlan
from taming.transformer.decode.attention import QuantizedCache, attend_cached
from taming.transformer.decode.graph import static_step
from taming.transformer.decode.native import NativeStep
from taming.transformer.decode.weights import Weights
from taming.transformer.gpt import GPT, CausalSelfAttention, KVCache

Step = Callable[[torch.Tensor, int], torch.Tensor]  # step(token (B,), pos) -> logits (B, V)
Attend = Callable[[CausalSelfAttention, torch.Tensor, int, int], torch.Tensor]  # (attn, x (B, T, C), layer,
# queries_from) -> (B, T - queries_from, C)


class Decoder:
    """Runs `gpt` for `rows` rows under `plan` (see the module docstring)."""

    def __init__(self, gpt: GPT, plan: DecodePlan, rows: int):
        self.gpt, self.plan, self.rows = gpt, plan, rows
        self.device = gpt.head.weight.device
        self.weights = Weights(gpt, plan, rows)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Inference mode, and bf16 autocast where the plan says (GPUs)."""
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.plan.autocast else contextlib.nullcontext()
        with torch.inference_mode(), amp:
            yield

    def new_cache(self, max_len: int) -> KVCache:
        """An empty cache of `max_len` positions for the rows, in the plan's dtype."""
        gpt = self.gpt
        if max_len > gpt.block_size:
            raise ValueError(f"GPT: cache of {max_len} positions exceeds block_size {gpt.block_size}")
        shape = (gpt.n_layer, self.rows, gpt.n_head, max_len, gpt.n_embd // gpt.n_head)
        if self.plan.cache == torch.int8:
            return QuantizedCache(*shape, device=self.device)
        return KVCache(*shape, dtype=self.plan.cache, device=self.device)

    def layers(self, x: torch.Tensor, attend: Attend) -> torch.Tensor:
        """Embedded inputs x (B, T, C) through every block (attention by `attend`) -> logits (B, V) of the last.
        With a reduced prefill the last block runs its queries and MLP for the last position alone (as
        GPT.forward's logits_from); float32 runs every row: a GEMM's bits depend on its row count (MKL)."""
        mlp, last = self.weights.mlp, len(self.gpt.blocks) - 1
        for layer, block in enumerate(self.gpt.blocks):
            q_from = x.shape[1] - 1 if layer == last and self.plan.prefill != "fp32" else 0
            x = (x[:, q_from:] if q_from else x) + attend(block.attn, block.ln1(x), layer, q_from)
            x = x + mlp(block.mlp, block.ln2(x))
        return self.weights.linear(self.gpt.head, self.gpt.ln_f(x[:, -1]))

    def forward(self, idx: torch.Tensor, cache: KVCache, pos: int) -> torch.Tensor:
        """idx (B, T) at positions [pos, pos + T), every earlier one in `cache` -> logits (B, V) of the last."""
        gpt, T = self.gpt, idx.shape[1]
        if pos + T > gpt.block_size:
            raise ValueError(f"GPT: sequence reaches position {pos + T} but block_size is {gpt.block_size}")
        if pos + T > cache.max_len:
            raise ValueError(f"GPT: positions up to {pos + T} do not fit a cache of {cache.max_len}")
        x = gpt.tok_emb(idx) + gpt.pos_emb[:, pos:pos + T]  # (B, T, C)
        reduced = cache.k[0].dtype != x.dtype and x.device.type == "cpu"
        if T == 1 and pos > 0 and pos >= gpt.n_unmasked and reduced:  # one code: the native attention
            return self.layers(x, lambda attn, h, layer, _: self.weights.linear(
                attn.proj, attend_cached(cache, layer, self.weights.qkv(attn, h), pos).to(h.dtype)))
        return self.layers(x, lambda attn, h, layer, q_from: self._attend(attn, h, cache, layer, pos, q_from))

    def _attend(self, attn: CausalSelfAttention, x: torch.Tensor, cache: KVCache, layer: int, pos: int,
                queries_from: int) -> torch.Tensor:
        """CausalSelfAttention.forward over a cache, with this call's weights."""
        B, T, C = x.shape
        q = attn.heads(self.weights.linear(attn.query, x[:, queries_from:] if queries_from else x))  # (B, nh, Tq, hd)
        k, v = (attn.heads(self.weights.linear(lin, x)) for lin in (attn.key, attn.value))
        k, v = cache.update(layer, pos, k, v)  # (B, nh, pos + T, hd)
        y = attn.attend(q, k, v, pos, queries_from)  # (B, nh, Tq, hd)
        return self.weights.linear(attn.proj, y.transpose(1, 2).reshape(B, T - queries_from, C))

    def stepper(self, cache: KVCache) -> Step:
        """`generate`'s one-code step over `cache`, by the plan's backend (call it before the prefill:
        a CUDA graph's capture clears the cache)."""
        if self.plan.backend == "cuda_graph":
            return static_step(self, cache, graph=self.device.type == "cuda")
        if self.plan.backend == "native":
            step = NativeStep.build(self.gpt, cache)
            if step is not None:
                return step
        return lambda token, pos: self.forward(token[:, None], cache, pos)


__all__ = ["Decoder", "Step"]
