"""One-code decoding steps on a GPU: a static key/value cache and one CUDA graph per sampling call.

A one-code step of the 26.5M GPT is ~100 small kernels; on a GPU launching them costs more than
running them. As gpt-fast and LlamaGen do, the step is made shape-static (the position is a device
tensor, attention runs over the whole preallocated cache with the positions after it masked;
`GPT.forward_with_cache` with a tensor start_pos) and captured once as a CUDA graph, then replayed
for every code: one launch per step.

`decode_step(gpt, cache, rows, graph)` returns step(token (B,), pos int) -> logits (B, V).
graph=False runs the same static step eagerly (how the CPU tests check it equals the dynamic one).
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

from taming.transformer.gpt import GPT, KVCache

Step = Callable[[torch.Tensor, int], torch.Tensor]


def decode_step(gpt: GPT, cache: KVCache, rows: int, graph: bool) -> Step:
    """A step(token (rows,), pos) -> logits (rows, V) writing position pos of `cache`."""
    device = cache.k[0].device
    token = torch.zeros(rows, 1, dtype=torch.long, device=device)  # (B, 1) static input
    pos = torch.full((1,), cache.max_len - 1, dtype=torch.long, device=device)  # (1,) static input

    for c in cache.k + cache.v:  # masked positions are multiplied by 0: no NaN may sit there
        c.zero_()

    def run() -> torch.Tensor:
        return gpt.forward_with_cache(token, cache, pos, last_only=True)  # (B, V)

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


__all__ = ["decode_step"]
