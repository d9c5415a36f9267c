"""One-query attention over a bf16 or int8 key/value cache on the CPU, read at its own size.

A one-code decoding step attends one query per row and head over every cached position: it reads
the whole cache once for 0.5 FLOP per byte, so on the CPU its time is the cache's bytes over the
memory bandwidth (at batch 32 the float32 cache is ~400 MB per step, three quarters of the step).
A bf16 cache halves those bytes, but PyTorch's CPU kernels for it are slow without AMX: SDPA's
bf16 flash kernel and bf16 batched matmuls ran 2.6-4x slower than float32 on an AMD AVX512-BF16
CPU (BENCHMARKS.md), i.e. slower than the bytes they save. So this module compiles (Inductor,
C++/OpenMP) the plain formula with the keys and values widened to float32 as they are loaded:
one pass over each, float32 products and sums. Measured there, one thread, batch 32 x 8 heads x
384 positions: 2.7 ms over a bf16 cache, 2.1 ms over an int8 cache (one float32 scale per key or
value vector, applied to the dot products and the softmax weights), against 4.5 ms for float32
SDPA over a float32 cache. Compiling takes ~5-20 s once per process (less from Inductor's disk cache).

Without a working compiler (torch.compile fails: no C++ toolchain, an unsupported platform) the
same formula runs eagerly, correct but slower than float32 SDPA; a warning says so once.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch

Attend = Callable[..., torch.Tensor]


def attend_formula(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q (B, nh, 1, hd) float32 scaled by hd**-0.5, k and v (B, nh, L, hd) any float dtype -> (B, nh, 1, hd)
    float32: softmax(q . k) v, every product and sum in float32."""
    s = (q * k.float()).sum(-1, keepdim=True)  # (B, nh, L, 1)
    p = s.softmax(dim=-2)
    return (p * v.float()).sum(-2, keepdim=True)  # (B, nh, 1, hd)


def attend_int8_formula(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_scale: torch.Tensor,
                        v_scale: torch.Tensor) -> torch.Tensor:
    """As attend_formula over int8 k and v (B, nh, L, hd) with one float32 scale per vector
    (k_scale, v_scale (B, nh, L, 1)): the scales multiply the dot products and the weights, not the
    L x hd numbers."""
    s = (q * k.float()).sum(-1, keepdim=True) * k_scale  # (B, nh, L, 1)
    p = s.softmax(dim=-2) * v_scale
    return (p * v.float()).sum(-2, keepdim=True)  # (B, nh, 1, hd)


_compiled: dict[bool, Attend] = {}  # quantized? -> compiled formula
_failed = False


def _compile(fn: Attend) -> Attend:
    # dynamic: one kernel for every batch size, cache length and position; dynamic_threads: the
    # kernel follows torch.set_num_threads at run time instead of the count seen when compiling
    return torch.compile(fn, dynamic=True, options={"cpp.dynamic_threads": True})


def attend_one_query(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_scale: torch.Tensor | None = None,
                     v_scale: torch.Tensor | None = None) -> torch.Tensor:
    """The compiled formula (q unscaled, (B, nh, 1, hd); with scales: the int8 one) -> (B, nh, 1, hd) float32."""
    global _failed
    q = q.float() * q.shape[-1] ** -0.5
    quantized = k_scale is not None
    fn = attend_int8_formula if quantized else attend_formula
    args = (q, k, v, k_scale, v_scale) if quantized else (q, k, v)
    if not _failed:
        try:
            if quantized not in _compiled:
                _compiled[quantized] = _compile(fn)
            return _compiled[quantized](*args)
        # torch.compile fails in many ways (no compiler, a platform Inductor does not support, a
        # backend error); every one of them leaves the eager formula, which is exact, as the way out
        except Exception as err:  # noqa: BLE001
            _failed = True
            warnings.warn(f"reduced key/value cache: compiling the one-query attention failed ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); running it eagerly (slower)",
                          RuntimeWarning, stacklevel=2)
    return fn(*args)


__all__ = ["attend_formula", "attend_int8_formula", "attend_one_query"]
