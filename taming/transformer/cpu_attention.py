"""The attention of a one-code decoding step on the CPU over a bf16 or int8 key/value cache: one
native call that writes the step's key and value and attends over the cache.

A one-code step attends one query per row and head over every cached position: it reads the whole
cache once for 0.5 FLOP per byte, so on the CPU its time is the cache's bytes over the memory
bandwidth (at batch 32 the float32 cache is ~400 MB per step, three quarters of the step). A bf16
cache halves those bytes, an int8 one (one float32 scale per key or value vector, ~1.06 bytes a
number) nearly quarters them. But PyTorch's CPU kernels for reduced caches are slow without AMX:
SDPA's bf16 flash kernel and bf16 batched matmuls ran 2.6-4x slower than float32 on an AMD
AVX512-BF16 CPU (BENCHMARKS.md), i.e. slower than the bytes they save; and at batch 4 the ~10
small ops around the attention (writing the new key and value, quantizing them, scaling,
reshaping) cost as much as the attention itself, a few microseconds of dispatch each.

So `attend_step` runs one C function (cpu_decode.c, built by taming.native for this CPU): per
row and head it writes the new key and value into the cache (quantized exactly as KVCache.write
does) and attends with the stored numbers widened to float32 as they are loaded, one pass over the
keys and one over the values. Measured on the AMD CPU, 2 threads, batch 4 x 8 heads x 64, int8
cache, inside `generate` (the cache read from memory): ~125 us a layer, against ~175 us for the
same formula compiled by Inductor (torch.compile, which also took 5-20 s to compile per process)
plus ~80 us of eager writes before. Where the cache is int8, `generate` runs
the whole step natively instead (cpu_step.py); this call serves the other one-code steps (the
sliding window, a bf16 cache).

`step_formula` / `step_int8_formula` are the same computation in PyTorch: the reference of the
tests and the fallback where no C compiler works (a warning says so once; correct, slower).
"""
from __future__ import annotations

import ctypes
import warnings
from pathlib import Path

import torch

from taming import native


def quantize_vectors(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (..., hd) -> (integers in [-127, 127] as x's dtype, float32 scale (..., 1)): x ~ q * scale,
    one scale per vector (its largest magnitude / 127), as the int8 key/value cache stores it."""
    s = x.abs().amax(dim=-1, keepdim=True).float().clamp_min(1e-30) / 127.0
    return (x / s).round(), s


def _split_heads(qkv: torch.Tensor, n_head: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """qkv (B, 1, 3C) float32 as [query | key | value] -> q, k, v (B, nh, 1, hd)."""
    B = qkv.shape[0]
    return qkv.view(B, 3, n_head, 1, -1).unbind(1)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_scale: torch.Tensor | None,
            v_scale: torch.Tensor | None) -> torch.Tensor:
    """q (B, nh, 1, hd) float32, k and v (B, nh, L, hd) any dtype (with scales (B, nh, L, 1): int8)
    -> softmax(q . k / sqrt(hd)) v (B, 1, nh * hd) float32, every product and sum in float32."""
    B, nh, _, hd = q.shape
    s = (q * hd ** -0.5 * k.float()).sum(-1, keepdim=True)  # (B, nh, L, 1)
    if k_scale is not None:  # the scales multiply the dot products and the weights, not L x hd numbers
        s = s * k_scale
    p = s.softmax(dim=-2)
    if v_scale is not None:
        p = p * v_scale
    y = (p * v.float()).sum(-2, keepdim=True)  # (B, nh, 1, hd)
    return y.transpose(1, 2).reshape(B, 1, nh * hd)


def step_formula(qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: int) -> torch.Tensor:
    """qkv (B, 1, 3C) of position pos; k_cache, v_cache (B, nh, max_len, hd) bf16 (or any float
    dtype): writes the key and value at pos, then attends over [0, pos] -> (B, 1, C) float32."""
    q, k, v = _split_heads(qkv.float(), k_cache.shape[1])
    k_cache[:, :, pos:pos + 1] = k.to(k_cache.dtype)
    v_cache[:, :, pos:pos + 1] = v.to(v_cache.dtype)
    end = pos + 1
    return _attend(q, k_cache[:, :, :end], v_cache[:, :, :end], None, None)


def step_int8_formula(qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, k_scale: torch.Tensor,
                      v_scale: torch.Tensor, pos: int) -> torch.Tensor:
    """As step_formula over an int8 cache with a float32 scale per vector (k_scale, v_scale
    (B, nh, max_len, 1)); the key and value are quantized as KVCache.write does."""
    q, k, v = _split_heads(qkv.float(), k_cache.shape[1])
    for x, store, scale in ((k, k_cache, k_scale), (v, v_cache, v_scale)):
        ints, s = quantize_vectors(x)
        store[:, :, pos:pos + 1] = ints.to(store.dtype)
        scale[:, :, pos:pos + 1] = s
    end = pos + 1
    return _attend(q, k_cache[:, :, :end], v_cache[:, :, :end], k_scale[:, :, :end], v_scale[:, :, :end])


SOURCE = Path(__file__).with_name("cpu_decode.c")
_P, _I = ctypes.c_void_p, ctypes.c_int64
_failed = False


def library() -> ctypes.CDLL | None:
    """The built kernels of cpu_decode.c (this attention, cpu_step.py's whole step), or None (after
    one warning) where they cannot be built here."""
    global _failed
    if _failed:
        return None
    try:
        lib = native.load(SOURCE)
    except native.NativeUnavailable as err:
        _failed = True
        warnings.warn(f"sampling on the CPU: the native decoding kernels are unavailable ({err}); "
                      "running them as PyTorch ops (slower)", RuntimeWarning, stacklevel=3)
        return None
    return typed(lib)


STEP_VARIANTS = ("portable", "avx2", "avx512_vnni")  # taming_step_variant(): the build's int8 dot products


def typed(lib: ctypes.CDLL) -> ctypes.CDLL:
    """lib (cpu_decode.c built by taming.native for some CPU class) with its functions' C types set."""
    if not getattr(lib, "_taming_typed", False):
        lib.taming_attend.argtypes = [_P] * 7 + [_I] * 5 + [ctypes.c_int]
        lib.taming_attend.restype = None
        lib.taming_step_available.restype = ctypes.c_int
        lib.taming_step_variant.restype = ctypes.c_int
        lib.taming_int8_step.argtypes = [_P] * 4 + [_I] * 2 + [ctypes.c_int]
        lib.taming_int8_step.restype = ctypes.c_int
        lib.taming_int8_linear.argtypes = [_P, _P, _I, _P, _P, _P]
        lib.taming_int8_linear.restype = None
        lib._taming_typed = True
    return lib


def _native_fits(qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, scales: tuple) -> bool:
    """The layouts the C kernel reads: float32 q|k|v, contiguous CPU tensors, an int8 or bf16 cache."""
    tensors = (qkv, k_cache, v_cache, *scales)
    if k_cache.dtype not in (torch.int8, torch.bfloat16) or v_cache.dtype != k_cache.dtype:
        return False
    if (k_cache.dtype == torch.int8) != bool(scales):  # int8 comes with its scales, bf16 without
        return False
    B, nh, max_len, hd = k_cache.shape  # the kernel trusts these sizes: every tensor must match them
    if qkv.shape != (B, 1, 3 * nh * hd) or v_cache.shape != k_cache.shape \
            or any(s.shape != (B, nh, max_len, 1) for s in scales):
        return False
    if qkv.dtype != torch.float32 or any(s.dtype != torch.float32 for s in scales):
        return False
    return all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)


def attend_step(qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: int,
                k_scale: torch.Tensor | None = None, v_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Write position pos of the cache from qkv (B, 1, 3C) and attend over [0, pos] -> (B, 1, C)
    float32: the native kernel where it is built and the tensors fit it, else step_formula (with
    scales: step_int8_formula)."""
    quantized = k_scale is not None
    scales = (k_scale, v_scale) if quantized else ()
    B, nh, max_len, hd = k_cache.shape
    if not 0 <= pos < max_len:
        raise ValueError(f"attend_step: position {pos} outside a cache of {max_len}")
    lib = library() if _native_fits(qkv, k_cache, v_cache, scales) else None
    if lib is None:
        return step_int8_formula(qkv, k_cache, v_cache, k_scale, v_scale, pos) if quantized \
            else step_formula(qkv, k_cache, v_cache, pos)
    out = torch.empty(B, 1, nh * hd)
    work = torch.empty(B, nh, max_len)  # scratch for the scores: one row of max_len per row and head
    ptrs = [t.data_ptr() if t is not None else None for t in (qkv, k_cache, v_cache, k_scale, v_scale, out, work)]
    lib.taming_attend(*ptrs, B, nh, max_len, hd, pos, torch.get_num_threads())
    return out


__all__ = ["STEP_VARIANTS", "attend_step", "library", "quantize_vectors", "step_formula", "step_int8_formula",
           "typed"]
