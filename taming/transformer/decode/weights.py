"""The weights one sampling call runs: the GPT's own, or copies the engine owns. The model is never
changed: copies live in this module's cache, keyed by the source tensors and their versions.

Decoding feeds one position per row, so every Linear is a (rows x in) @ (in x out) product with a
handful of rows: it streams the whole weight for very little arithmetic. Ways to make that cheaper:

- fp32, 2-64 rows: a column-major copy of every weight (same values); the CPU GEMM runs ~1.5x
  faster on that layout for so few rows. Made per call (a copy of the model's size, not kept).
- bf16: a copy prepacked in oneDNN's blocked layout, for inputs of at most FEW_ROWS["bf16"] rows
  (half the bytes, ~2x faster for one row); longer inputs keep the float32 weights, faster there
  on CPUs without AMX. Not bit-equal to float32.
- int8: FBGEMM's dynamic quantized linear (int8 weights with one scale per output row, activations
  quantized per call): a quarter of the float32 bytes, VNNI dot products, for inputs of up to
  FEW_ROWS["int8"] rows (batched decoding).
- the prefill (B x L rows) runs through a bf16 copy laid out for many rows where the plan says
  bf16 GEMMs are fast (`DecodePlan.prefill`), with the MLP's GELU fused into its first GEMM; through
  the int8 copies where it says int8 (CPUs without fast bf16: ~1.5x float32 there on AVX2).
- attention's query, key and value as one reduced copy of the three side by side (`qkv`): one call
  instead of three (at batch 4 an int8 call costs ~20 us whatever its size).

Reduced copies are kept between calls while their sources are unchanged (quantizing and packing 26M
weights costs ~1 s, as much as sampling 4 images), in a cache keyed weakly by the source tensor: it
goes with the model, and an optimizer step (a new version) makes a new copy.
"""
from __future__ import annotations

import threading
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from taming.precision import DecodePlan
from taming.transformer.gpt import CausalSelfAttention

Fn = Callable[[torch.Tensor], torch.Tensor]
# Inputs of at most this many rows use the reduced-precision copy. bf16 (no AMX): beyond 16 rows a
# float32 GEMM is as fast. int8 (VNNI): ~5x the float32 rate from 4 to 128 rows and still 2x at
# 1024 (measured here), so batched decoding at batch 32-256 keeps it; prefill (B x L rows) mostly not.
FEW_ROWS = {"bf16": 16, "int8": 256}
BULK_ROWS_HINT = 4096  # the row count the bf16 prefill copy is laid out for (oneDNN picks its blocking)
COLUMN_MAJOR_ROWS = (2, 64)  # fp32 row counts served faster by column-major weights
_kept = WeakIdKeyDictionary()  # first source tensor -> {kind: (versions of all sources, copy)}
_lock = threading.Lock()


def kept(kind: str, sources: list[torch.Tensor | None], make: Callable[[], object]) -> object:
    """make(), kept under `kind` while the `sources` tensors are the same, unchanged ones."""
    key = tuple(None if t is None else (id(t), t.data_ptr(), t._version) for t in sources)
    with _lock:
        found = _kept.get(sources[0], {}).get(kind)
    if found is not None and found[0] == key:
        return found[1]
    with torch.no_grad():
        copy = make()
    with _lock:
        _kept.setdefault(sources[0], {})[kind] = (key, copy)
    return copy


class _PackedBF16:
    """`linear` as a bf16 oneDNN-packed weight: call(x) -> linear(x) in x's dtype; gelu(x) -> exact
    (erf) GELU of linear(x) fused into the GEMM, left in bf16 for the next bf16 GEMM (the MLP of a
    many-row prefill: no float32 pass over its 4x-wide hidden activations)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight, self.bias = weight, bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), self.weight, self.bias, "none", [], "")
        return y.to(x.dtype)

    def gelu(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), self.weight, self.bias, "gelu", [], "none")


def packed_bf16(linear: nn.Linear, rows: int) -> _PackedBF16 | None:
    """A bf16 oneDNN-packed version of `linear`, or None where this torch build or CPU lacks the ops."""
    try:
        weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach().to(torch.bfloat16), rows)
        bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
        packed = _PackedBF16(weight, bias)
        probe = torch.zeros(1, linear.in_features, dtype=torch.bfloat16)
        packed(probe), packed.gelu(probe)
    except (AttributeError, RuntimeError, NotImplementedError):
        return None
    return packed


def dynamic_int8(linear: nn.Linear, rows: int = 0) -> Fn | None:
    """`linear` with int8 weights (one scale per output row) and activations quantized per call
    (FBGEMM's dynamic quantized linear): a quarter of the float32 bytes. None where this torch build
    lacks the quantized CPU ops."""
    w = linear.weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
    bias = None if linear.bias is None else linear.bias.detach().float()
    try:
        with warnings.catch_warnings():  # quantized tensor constructors warn about their future move
            warnings.simplefilter("ignore")
            q = torch.quantize_per_channel(w, scale, torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(q, bias)
            torch.ops.quantized.linear_dynamic(torch.zeros(1, linear.in_features), packed, True)
    except (AttributeError, RuntimeError, NotImplementedError):
        return None

    def run(x: torch.Tensor) -> torch.Tensor:
        # reduce_range: 7-bit activations, so no CPU's 16-bit intermediate sums can saturate
        return torch.ops.quantized.linear_dynamic(x.float(), packed, True).to(x.dtype)

    return run


REDUCED = {"bf16": packed_bf16, "int8": dynamic_int8}


def concatenated(parts: list[nn.Linear]) -> nn.Linear:
    """One Linear computing [part_0(x) | part_1(x) | ...] (same input, outputs side by side); a part
    without a bias contributes zeros where another has one."""
    has_bias = any(p.bias is not None for p in parts)
    out = nn.Linear(parts[0].in_features, sum(p.out_features for p in parts), bias=has_bias, device="meta")
    out.weight = nn.Parameter(torch.cat([p.weight.detach() for p in parts]), requires_grad=False)
    if has_bias:
        out.bias = nn.Parameter(torch.cat([p.bias.detach() if p.bias is not None else p.weight.new_zeros(p.out_features)
                                           for p in parts]), requires_grad=False)
    return out


def _reduced(parts: list[nn.Linear], precision: str, rows: int) -> Fn | None:
    """The kept `precision` copy of the Linears `parts` side by side (bf16 copies: laid out for `rows`)."""
    rows = rows if precision == "bf16" else 0  # int8 copies do not depend on the row count
    sources = [t for p in parts for t in (p.weight, p.bias)]
    return kept(f"{precision} {rows} {len(parts)}", sources,
                lambda: REDUCED[precision](parts[0] if len(parts) == 1 else concatenated(parts), rows))


class Weights:
    """How the Linears of `gpt` run in one sampling call of `rows` rows under `plan`: `linear(m, x)`,
    `qkv(attn, x)` (query, key and value side by side) and `mlp(mlp, x)`; copies as the module
    docstring says, on the CPU only (GPUs run the model's weights, under autocast for bf16)."""

    def __init__(self, gpt: nn.Module, plan: DecodePlan, rows: int):
        self.few: dict[nn.Module, Fn] = {}  # inputs of up to few_rows rows
        self.bulk: dict[nn.Module, Fn] = {}  # longer inputs
        self.few_rows = FEW_ROWS.get(plan.step, 0)
        linears = [m for m in gpt.modules() if isinstance(m, nn.Linear) and m.weight.device.type == "cpu"]
        if plan.step in REDUCED:
            self.few = {m: _reduced([m], plan.step, rows) for m in linears}
            for m in gpt.modules():
                if isinstance(m, CausalSelfAttention) and m.query in self.few:
                    self.few[m] = _reduced([m.query, m.key, m.value], plan.step, rows)
        if plan.prefill in REDUCED:  # bf16 copies laid out for many rows; int8 ones are the steps' own
            self.bulk = {m: _reduced([m], plan.prefill, BULK_ROWS_HINT) for m in linears}
        elif plan.step == "fp32" and COLUMN_MAJOR_ROWS[0] <= rows <= COLUMN_MAJOR_ROWS[1]:
            for m in linears:  # every input, prefill and steps alike
                if m.weight.is_contiguous():
                    weight = m.weight.detach().t().contiguous().t()
                    self.bulk[m] = (lambda x, w=weight, b=m.bias: F.linear(x, w, b))
            self.few = self.bulk

    def _copy(self, m: nn.Module, x: torch.Tensor) -> Fn | None:
        return (self.few if x.shape[:-1].numel() <= self.few_rows else self.bulk).get(m)

    def linear(self, m: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        fn = self._copy(m, x)
        return F.linear(x, m.weight, m.bias) if fn is None else fn(x)

    def qkv(self, attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> [query | key | value] (B, T, 3C)."""
        fn = self._copy(attn, x)
        if fn is not None:
            return fn(x)
        return torch.cat([self.linear(attn.query, x), self.linear(attn.key, x), self.linear(attn.value, x)], dim=-1)

    def mlp(self, mlp: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """Block.mlp(x) without its dropout; the bf16 prefill copy fuses an exact GELU into its GEMM."""
        first, act, second = mlp[0], mlp[1], mlp[2]
        fn = self._copy(first, x)
        if isinstance(fn, _PackedBF16) and isinstance(act, nn.GELU) and act.approximate == "none" \
                and x.shape[:-1].numel() > self.few_rows:
            return self.linear(second, fn.gelu(x)).to(x.dtype)
        h = self.linear(first, x)  # a new tensor: GELU in place, the same numbers, one large buffer less
        return self.linear(second, torch.ops.aten.gelu_(h, approximate=act.approximate) if isinstance(act, nn.GELU) else act(h))


__all__ = ["BULK_ROWS_HINT", "FEW_ROWS", "Weights", "concatenated", "dynamic_int8", "kept", "packed_bf16"]
