"""The attention of a one-code decoding step on the CPU over a bf16 or int8 key/value cache: one
native call that writes the step's key and value and attends over the cache; and the int8 cache.

A one-code step attends one query per row and head over every cached position: it reads the whole
cache once for 0.5 FLOP per byte, so on the CPU its time is the cache's bytes over the memory
bandwidth. A bf16 cache halves those bytes, an int8 one (`QuantizedCache`: one float32 scale per
key or value vector, ~1.06 bytes a number) nearly quarters them. PyTorch's CPU kernels for reduced
caches are slow without AMX (SDPA's bf16 kernel ran 2.6-4x slower than float32), and at batch 4
the ~10 small ops around the attention cost as much as the attention itself. So `attend_step` runs
one C function (cpu_decode.c's taming_attend, built by taming.native): per row and head it writes
the new key and value (quantized exactly as QuantizedCache.write does) and attends with the stored
numbers widened to float32 as they are loaded. Numbers: BENCHMARKS.md "Why the decoding plan".

`step_formula` is the same computation in PyTorch: the tests' reference and the fallback where no
C compiler works (a warning says so once; correct, slower).
"""
from __future__ import annotations

import torch

from taming.transformer.decode.native import library
from taming.transformer.gpt import KVCache


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


def step_formula(qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: int,
                 k_scale: torch.Tensor | None = None, v_scale: torch.Tensor | None = None) -> torch.Tensor:
    """qkv (B, 1, 3C) of position pos; k_cache, v_cache (B, nh, max_len, hd) bf16 (or any float dtype),
    or int8 with a float32 scale per vector (k_scale, v_scale (B, nh, max_len, 1)): writes the key
    and value at pos (quantized as QuantizedCache.write does), then attends over [0, pos] -> (B, 1, C)
    float32."""
    q, k, v = _split_heads(qkv.float(), k_cache.shape[1])
    for x, store, scale in ((k, k_cache, k_scale), (v, v_cache, v_scale)):
        if scale is not None:
            x, scale[:, :, pos:pos + 1] = quantize_vectors(x)
        store[:, :, pos:pos + 1] = x.to(store.dtype)
    end = pos + 1
    scales = [None if s is None else s[:, :, :end] for s in (k_scale, v_scale)]
    return _attend(q, k_cache[:, :, :end], v_cache[:, :, :end], *scales)


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
    float32: the native kernel where it is built and the tensors fit it, else step_formula."""
    quantized = k_scale is not None
    scales = (k_scale, v_scale) if quantized else ()
    B, nh, max_len, hd = k_cache.shape
    if not 0 <= pos < max_len:
        raise ValueError(f"attend_step: position {pos} outside a cache of {max_len}")
    lib = library() if _native_fits(qkv, k_cache, v_cache, scales) else None
    if lib is None:
        return step_formula(qkv, k_cache, v_cache, pos, k_scale, v_scale)
    out = torch.empty(B, 1, nh * hd)
    work = torch.empty(B, nh, max_len)  # scratch for the scores: one row of max_len per row and head
    ptrs = [t.data_ptr() if t is not None else None for t in (qkv, k_cache, v_cache, k_scale, v_scale, out, work)]
    lib.taming_attend(*ptrs, B, nh, max_len, hd, pos, torch.get_num_threads())
    return out


class QuantizedCache(KVCache):
    """A KVCache of int8 numbers: every key and value vector of head_dim numbers is stored as int8
    times one float32 scale (its largest magnitude / 127, in `k_scale[l]`, `v_scale[l]`
    (B, n_head, max_len, 1)): 1.06 bytes a number instead of 4."""

    def __init__(self, n_layer: int, batch: int, n_head: int, max_len: int, head_dim: int,
                 device: torch.device | str | None = None):
        super().__init__(n_layer, batch, n_head, max_len, head_dim, torch.int8, device)
        self.k_scale = [torch.empty(batch, n_head, max_len, 1, device=device) for _ in range(n_layer)]
        self.v_scale = [torch.empty(batch, n_head, max_len, 1, device=device) for _ in range(n_layer)]

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        end = start + k.shape[2]
        for x, store, scale in ((k, self.k, self.k_scale), (v, self.v, self.v_scale)):
            store[layer][:, :, start:end], scale[layer][:, :, start:end] = quantize_vectors(x)  # scale (B, nh, T, 1)

    def read(self, layer: int, end: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = super().read(layer, end, dtype)
        return k * self.k_scale[layer][:, :, :end], v * self.v_scale[layer][:, :, :end]


def attend_cached(cache: KVCache, layer: int, qkv: torch.Tensor, pos: int) -> torch.Tensor:
    """attend_step over layer `layer` of a reduced `cache` (bf16, or QuantizedCache)."""
    scales = (cache.k_scale[layer], cache.v_scale[layer]) if isinstance(cache, QuantizedCache) else ()
    return attend_step(qkv, cache.k[layer], cache.v[layer], pos, *scales)


__all__ = ["QuantizedCache", "attend_cached", "attend_step", "quantize_vectors", "step_formula"]
