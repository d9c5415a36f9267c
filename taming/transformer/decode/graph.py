"""One-code decoding steps on a GPU: a static key/value cache and one CUDA graph per sampling call.

A one-code step of the 26.5M GPT is ~100 small kernels; on a GPU launching them costs more than
running them. As gpt-fast and LlamaGen do, the step is made shape-static (the position is a device
tensor, attention runs over the whole preallocated cache with the positions after it masked) and
captured once as a CUDA graph, then replayed for every code: one launch per step.

`static_step(decoder, cache, graph)` returns step(token (B,), pos int) -> logits (B, V) for an
engine.Decoder. graph=False runs the same static step eagerly (how the CPU tests check it equals
the dynamic one).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
import torch.nn.functional as F

from taming.transformer.gpt import CausalSelfAttention, KVCache

Step = Callable[[torch.Tensor, int], torch.Tensor]


def _attend(attn: CausalSelfAttention, weights: Any, x: torch.Tensor, cache: KVCache, layer: int,
            pos: torch.Tensor) -> torch.Tensor:
    """One position at device tensor pos (1,): x (B, 1, C) -> (B, 1, C). Its key and value go to the
    cache at pos, and the query attends over the whole cache with the positions after pos masked:
    the same shapes at every step, so one captured graph replays them all."""
    B, _, C = x.shape
    q, k, v = (attn.heads(weights.linear(lin, x)) for lin in (attn.query, attn.key, attn.value))  # (B, nh, 1, hd)
    cache.k[layer].index_copy_(2, pos, k.to(cache.k[layer].dtype))
    cache.v[layer].index_copy_(2, pos, v.to(cache.v[layer].dtype))
    k, v = cache.k[layer], cache.v[layer]  # (B, nh, max_len, hd)
    allowed = (torch.arange(cache.max_len, device=pos.device) <= pos).view(1, 1, 1, -1)  # (1, 1, 1, max_len)
    y = F.scaled_dot_product_attention(q.to(k.dtype), k, v, attn_mask=allowed)  # (B, nh, 1, hd)
    return weights.linear(attn.proj, y.transpose(1, 2).reshape(B, 1, C).to(q.dtype))


def static_step(decoder: Any, cache: KVCache, graph: bool) -> Step:
    """A step(token (rows,), pos) -> logits (rows, V) of `decoder` (an engine.Decoder) writing
    position pos of `cache`."""
    gpt, rows, device = decoder.gpt, cache.batch, cache.k[0].device
    token = torch.zeros(rows, 1, dtype=torch.long, device=device)  # (B, 1) static input
    pos = torch.full((1,), cache.max_len - 1, dtype=torch.long, device=device)  # (1,) static input

    for c in cache.k + cache.v:  # masked positions are multiplied by 0: no NaN may sit there
        c.zero_()

    def run() -> torch.Tensor:
        x = gpt.tok_emb(token) + gpt.pos_emb[:, pos]  # (B, 1, C)
        return decoder.layers(x, lambda attn, h, layer, _: _attend(attn, decoder.weights, h, cache, layer, pos))

    if not graph:
        def eager(tok: torch.Tensor, p: int) -> torch.Tensor:
            token.copy_(tok[:, None])
            pos.fill_(p)
            return run()
        return eager

    # warm-up and capture write the last position, which the last step overwrites before reading it;
    # autocast may not cache weight casts across a capture
    amp = (torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
           if torch.is_autocast_enabled("cuda") else contextlib.nullcontext())
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side), amp:
        for _ in range(2):
            run()
    torch.cuda.current_stream(device).wait_stream(side)
    cuda_graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(cuda_graph), amp:
        logits = run()

    def replay(tok: torch.Tensor, p: int) -> torch.Tensor:
        token.copy_(tok[:, None])
        pos.fill_(p)
        cuda_graph.replay()
        return logits
    return replay


__all__ = ["static_step"]
