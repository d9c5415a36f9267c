"""The original minGPT module-level samplers (`taming.modules.transformer.mingpt`), with their
original signatures, on top of the key/value-cached sampler of taming/transformer/decode/."""
from __future__ import annotations

from typing import Callable

import torch

from taming.transformer.decode import generate
from taming.transformer.gpt import GPT


def top_k_logits(logits: torch.Tensor, k: int) -> torch.Tensor:
    """logits (B, V) with everything below the k-th largest set to -inf (ties kept)."""
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def sample(model: GPT, x: torch.Tensor, steps: int, temperature: float = 1.0, sample: bool = False,
           top_k: int | None = None) -> torch.Tensor:
    """Original minGPT `sample`: x (B, L) -> (B, L + steps), the given codes followed by new ones.
    (The original recomputes the whole sequence each step; this one uses the KV cache.)"""
    new = generate(model, x, steps, temperature=temperature, top_k=top_k, greedy=not sample)
    return torch.cat([x, new], dim=1)


def sample_with_past(x: torch.Tensor, model: GPT, steps: int, temperature: float = 1.0,
                     sample_logits: bool = True, top_k: int | None = None, top_p: float | None = None,
                     callback: Callable[[int], None] | None = None) -> torch.Tensor:
    """Original cached sampler: conditioning x (B, L) -> the `steps` new codes (B, steps)."""
    step_cb = None if callback is None else (lambda k, codes: callback(k))
    return generate(model, x, steps, temperature=temperature, top_k=top_k, top_p=top_p,
                    greedy=not sample_logits, callback=step_cb)


__all__ = ["top_k_logits", "sample", "sample_with_past"]
