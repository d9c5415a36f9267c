"""Sampling codes from the GPT: `sample_logits` (logits -> codes) and the cached decoding loop over
the engine, `generate` (and `sequence_nll`, the same loop teacher-forced).

Shapes: B rows sampled together, V vocabulary, L conditioning length.
- `sample_logits(logits (B, V)) -> (B,)`: temperature, top-k, top-p (nucleus), argmax.
- `generate(gpt, cond_codes (B, L), steps) -> codes (B, steps)`: prefill the conditioning once,
  then one cached position per sampled code. In argmax mode it gives the same codes as the
  original full-recompute sampler. Optional classifier-free guidance batches the conditional and
  unconditional rows in one forward.
- `sequence_nll(gpt, cond_codes (B, L), codes (B, S)) -> (B, S)`: teacher-forced NLL computed the
  way `generate` computes its logits (the quality cost of a sampling precision).
`precision` is one of taming.precision.PRECISIONS ("fp32" by default: the original's numbers).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
from typing import Callable, Iterator, Sequence, Union

import torch

from taming.precision import resolve
from taming.transformer.decode.engine import Decoder, Step
from taming.transformer.decode.native import library
from taming.transformer.gpt import GPT, KVCache

Callback = Callable[[int, torch.Tensor], None]
Generators = Union[torch.Generator, Sequence[torch.Generator], None]  # one for all rows, or one per row


def sample_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, greedy: bool = False,
                  generator: Generators = None) -> torch.Tensor:
    """logits (B, V) -> codes (B,).

    greedy: argmax (temperature, top_k, top_p ignored). Otherwise logits / temperature, keep the
    top_k largest (ties with the k-th kept, as the original), keep the smallest set of codes whose
    probability reaches top_p (the most likely code always stays), then draw with `generator`
    (one torch.Generator, or a sequence of B: row b draws from generator[b] alone).
    """
    if greedy:
        return logits.argmax(dim=-1)
    if temperature <= 0:
        raise ValueError(f"sample_logits: temperature must be > 0, got {temperature} (use greedy=True for argmax)")
    logits = logits.float() if temperature == 1.0 else logits.float() / temperature  # x / 1 == x: one op less
    vocab = logits.shape[-1]
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"sample_logits: top_k must be >= 1, got {top_k}")
        if top_k < vocab:
            kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1)
            logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        if top_p <= 0:
            raise ValueError(f"sample_logits: top_p must be in (0, 1], got {top_p}")
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability of the codes ranked above each one
        drop_sorted = before >= top_p  # rank 0 has before == 0: never dropped
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return _draw(logits.softmax(dim=-1), generator)


def _uniform(rows: int, generator: Generators, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(rows, 1) uniform numbers: from one generator, or one number from each row's own generator,
    so that a row's draws do not depend on which other rows share its batch."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(rows, 1, generator=generator, device=device, dtype=dtype)
    if len(generator) != rows:
        raise ValueError(f"sampling: {len(generator)} generators for {rows} rows (give one per row)")
    return torch.cat([torch.rand(1, 1, generator=g, device=device, dtype=dtype) for g in generator])


@functools.cache
def _kernels() -> ctypes.CDLL | None:
    """The native kernels once looked up (any CPU class's build draws the same codes: plain C)."""
    return library()


def _draw(probs: torch.Tensor, generator: Generators) -> torch.Tensor:
    """One code per row of probs (B, V) by inverting the cumulative distribution: a single uniform
    number per row (cheaper than torch.multinomial, which runs once per code). On the CPU one native
    call computes the same codes from the same numbers (~8 ops fewer per sampled code)."""
    u = _uniform(probs.shape[0], generator, probs.device, probs.dtype)
    lib = _kernels() if probs.device.type == "cpu" and probs.dtype == torch.float32 else None
    if lib is not None:
        probs, out = probs.contiguous(), torch.empty(probs.shape[0], dtype=torch.long)
        lib.taming_draw(probs.data_ptr(), u.data_ptr(), probs.shape[0], probs.shape[1], out.data_ptr())
        return out
    cdf = probs.cumsum(dim=-1)  # (B, V)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)[:, 0]  # first code with cdf > u * total
    # u * total can round up to total: then take the last code of nonzero probability (on the CPU
    # only looked for when it happened: three ops of a few microseconds each per sampled code)
    over = idx >= probs.shape[-1]
    if probs.device.type == "cpu" and not bool(over.any()):
        return idx
    last = (probs > 0).cumsum(dim=-1).argmax(dim=-1)
    return torch.where(over, last, idx)


def decoder(gpt: GPT, precision: str, rows: int) -> Decoder:
    """The engine for `rows` rows of `gpt` at `precision` (one of PRECISIONS, "auto" resolved for its device)."""
    return Decoder(gpt, resolve(precision, gpt.head.weight.device).decode, rows)


@contextlib.contextmanager
def _stepping(gpt: GPT, precision: str, rows: int, length: int) -> Iterator[tuple[Decoder, KVCache, Step]]:
    """The engine at `precision` for `rows` rows, running, with a cache of `length` positions and its
    one-code step: what generate and sequence_nll run on."""
    dec = decoder(gpt, precision, rows)
    with dec.running():
        cache = dec.new_cache(length)
        yield dec, cache, dec.stepper(cache)  # before the prefill: a graph capture clears the cache


def generate(gpt: GPT, cond_codes: torch.Tensor, steps: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
             generator: Generators = None, cfg_scale: float | None = None,
             uncond_codes: torch.Tensor | None = None, callback: Callback | None = None,
             precision: str = "fp32") -> torch.Tensor:
    """Sample `steps` codes after cond_codes (B, L) -> codes (B, steps).

    cond_codes is everything the model sees before the first sampled code: conditioning codes,
    an SOS token for unconditional models (L = 1), and optionally given image codes. One cache of
    L + steps - 1 positions is allocated; the conditioning is prefilled once, then each sampled
    code is fed as one new position (on a GPU: one replay of a CUDA graph captured for the call).

    Classifier-free guidance (cfg_scale not None): uncond_codes (B or 1, L) is the "null"
    conditioning of the same length (the model defines it, e.g. a reserved token repeated). Both
    are run as 2B rows of one forward, and the logits sampled from are u + cfg_scale * (c - u):
    scale 1 is conditional sampling, 0 unconditional.

    generator: one torch.Generator for all rows, or one per row (B of them): then row b's codes
    depend only on generator[b] and its conditioning, not on the batch it is sampled in.

    callback(k, codes (B, k + 1)) is called after each sampled code.
    """
    if cond_codes.dim() != 2 or cond_codes.shape[1] < 1:
        raise ValueError(f"generate: cond_codes must be (B, L) with L >= 1 (an SOS token for unconditional "
                         f"models), got shape {tuple(cond_codes.shape)}")
    if steps < 1:
        raise ValueError(f"generate: steps must be >= 1, got {steps}")
    B, L = cond_codes.shape
    if L + steps - 1 > gpt.block_size:
        raise ValueError(f"generate: {L} conditioning codes + {steps} steps need {L + steps - 1} positions, "
                         f"the GPT's block_size is {gpt.block_size}")
    rows = cond_codes
    if cfg_scale is not None:
        if uncond_codes is None:
            raise ValueError("generate: cfg_scale needs uncond_codes (the null conditioning)")
        if uncond_codes.dim() != 2 or uncond_codes.shape[0] not in (1, B) or uncond_codes.shape[1] != L:
            raise ValueError(f"generate: uncond_codes {tuple(uncond_codes.shape)} must be (B or 1, L) with "
                             f"cond_codes {tuple(cond_codes.shape)}")
        uncond_codes = uncond_codes.to(cond_codes.device).expand(B, -1)
        rows = torch.cat([cond_codes, uncond_codes])  # (2B, L)
    out = torch.empty(B, steps, dtype=torch.long, device=cond_codes.device)
    with _stepping(gpt, precision, rows.shape[0], L + steps - 1) as (dec, cache, step):
        logits = dec.forward(rows, cache, 0)  # (B or 2B, V)
        for k in range(steps):
            if cfg_scale is not None:
                cond, uncond = logits.float().chunk(2)
                logits = uncond + cfg_scale * (cond - uncond)
            token = sample_logits(logits, temperature, top_k, top_p, greedy, generator)  # (B,)
            out[:, k] = token
            if callback is not None:
                callback(k, out[:, :k + 1])
            if k + 1 < steps:
                feed = token if cfg_scale is None else torch.cat([token, token])
                logits = step(feed, L + k)
    return out


def sequence_nll(gpt: GPT, cond_codes: torch.Tensor, codes: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Negative log-likelihood (nats) of codes (B, S) after cond_codes (B, L) -> (B, S), with logits
    computed as `generate` computes them at this precision (prefill, then one cached step per
    code through the same step): the validation NLL that measures a sampling precision's cost."""
    if cond_codes.dim() != 2 or codes.dim() != 2 or codes.shape[0] != cond_codes.shape[0] or codes.shape[1] < 1:
        raise ValueError(f"sequence_nll: cond_codes (B, L) and codes (B, S >= 1), got {tuple(cond_codes.shape)} "
                         f"and {tuple(codes.shape)}")
    (B, L), S = cond_codes.shape, codes.shape[1]
    if L + S - 1 > gpt.block_size:
        raise ValueError(f"sequence_nll: {L} + {S} codes exceed the GPT's block_size {gpt.block_size}")
    nll = torch.empty(B, S, device=codes.device)
    with _stepping(gpt, precision, B, L + S - 1) as (dec, cache, step):
        logits = dec.forward(cond_codes, cache, 0)  # (B, V) predicting codes[:, 0]
        for k in range(S):
            nll[:, k] = -logits.float().log_softmax(-1).gather(-1, codes[:, k:k + 1])[:, 0]
            if k + 1 < S:
                logits = step(codes[:, k], L + k)
    return nll


__all__ = ["Callback", "Generators", "decoder", "generate", "sample_logits", "sequence_nll"]
