"""Faster few-row matmuls for one-code-at-a-time decoding on the CPU.

Decoding feeds one position per row, so every Linear is a (rows x in) @ (in x out) product with
a handful of rows: it streams the whole weight for very little arithmetic. Ways to make that
cheaper, all confined to a `decoding_weights(model, precision, rows)` context so training never
sees them:

- "fp32": the weights are stored column-major for the duration (same shapes, same values); with
  2-64 rows the CPU GEMM runs ~1.5x faster on that layout. Restored on exit, because optimizer
  states are laid out like their parameters and fused AdamW assumes the same strides.
- "bf16": each Linear also gets a bf16 copy prepacked in oneDNN's blocked layout and uses it for
  inputs of at most PACKED_MAX_ROWS["bf16"] rows (half the bytes, ~2x faster for one row); longer inputs
  (prefill) keep the float32 weights, which are faster there on CPUs without AMX. Not bit-equal
  to float32.
- "auto": what taming.hardware chooses for the model's device (int8 on CPUs without AMX, bf16 with
  AMX or on GPUs with bf16).
- "int8": as "bf16" with FBGEMM's dynamic quantized linear instead (int8 weights with one scale per
  output row, activations quantized per call): a quarter of the float32 bytes, VNNI dot products,
  for inputs of up to PACKED_MAX_ROWS["int8"] rows (batched decoding).

Modules naming Linears of one input in `DECODE_FUSED` (attention's query, key and value) get one
reduced-precision copy of them side by side, for the same inputs: one call instead of three
(at batch 4 an int8 call costs ~20 us whatever its size: 512->1536 in 28 us against 3 x 22 us).

Inputs of more rows than that (the prefill of the conditioning, B x L rows) run through a second,
bf16 copy where taming.hardware's `decode_plan` says bf16 GEMMs are fast (`DecodePlan.prefill`),
through the int8 copy where it says int8, else through the float32 weights.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from taming.hardware import decode_plan

# Inputs of at most this many rows use the reduced-precision copy. bf16 (no AMX): beyond 16 rows a
# float32 GEMM is as fast. int8 (VNNI): ~5x the float32 rate from 4 to 128 rows and still 2x at
# 1024 (measured here), so batched decoding at batch 32-256 keeps it; prefill (B x L rows) mostly not.
PACKED_MAX_ROWS = {"bf16": 16, "int8": 256}
BULK_ROWS_HINT = 4096  # the row count the bf16 prefill copy is laid out for (oneDNN picks its blocking)
PRECISIONS = ("auto", "fp32", "bf16", "int8")  # "auto": taming.hardware chooses for the device


class Linear(nn.Linear):
    """nn.Linear (same parameters and state_dict) that can run few-row inputs from a packed copy."""

    _packed: Callable[[torch.Tensor], torch.Tensor] | None = None  # inputs of up to _packed_rows rows
    _packed_rows = 0
    _bulk: Callable[[torch.Tensor], torch.Tensor] | None = None  # longer inputs (prefill)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self._packed is not None or self._bulk is not None) and not torch.is_grad_enabled():
            few = x.shape[:-1].numel() <= self._packed_rows
            fn = self._packed if few else self._bulk
            if fn is not None:
                return fn(x)
        return F.linear(x, self.weight, self.bias)

    def forward_gelu(self, x: torch.Tensor) -> torch.Tensor | None:
        """Exact GELU of forward(x) in bf16 when the bf16 prefill copy serves x (fused into its GEMM),
        else None."""
        if self._bulk is None or torch.is_grad_enabled() or x.shape[:-1].numel() <= self._packed_rows:
            return None
        gelu = getattr(self._bulk, "gelu", None)
        return None if gelu is None else gelu(x)


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


def _packed_bf16(linear: nn.Linear, rows: int) -> _PackedBF16 | None:
    """A bf16 oneDNN-packed version of `linear`, or None where this torch build lacks the ops."""
    try:
        weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach().to(torch.bfloat16), rows)
        bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
        packed = _PackedBF16(weight, bias)
        probe = torch.zeros(1, linear.in_features, dtype=torch.bfloat16)
        packed(probe), packed.gelu(probe)
    except (AttributeError, RuntimeError, NotImplementedError):
        return None
    return packed


def _dynamic_int8(linear: nn.Linear, rows: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """`linear` with int8 weights (one scale per output row) and activations quantized per call
    (FBGEMM's dynamic quantized linear, VNNI int8 dot products): a quarter of the float32 bytes.
    None where this torch build lacks the quantized CPU ops."""
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


_FEW_ROWS = {"bf16": _packed_bf16, "int8": _dynamic_int8}
Packed = Callable[[torch.Tensor], torch.Tensor] | None


def _version(t: torch.Tensor | None):
    return None if t is None else (t.data_ptr(), t._version)


def kept_copy(owner: nn.Module, slot: tuple, sources: list[torch.Tensor | None], make: Callable[[], Packed]) -> Packed:
    """make(), kept on `owner` under `slot` between sampling calls while the `sources` tensors are
    unchanged (quantizing and packing 26M weights costs ~1 s, as much as sampling 4 images)."""
    key = tuple(_version(t) for t in sources)
    copies = owner.__dict__.setdefault("_reduced", {})  # slot -> (key, copy)
    cached = copies.get(slot)
    if cached is None or cached[0] != key:
        cached = (key, make())
        copies[slot] = cached
    return cached[1]


def _reduced_copy(linear: "Linear", precision: str, rows: int) -> Packed:
    """The reduced-precision copy of `linear` (kept while its weights are unchanged)."""
    rows = rows if precision == "bf16" else 0  # int8 copies do not depend on the row count
    return kept_copy(linear, (precision, rows), [linear.weight, linear.bias],
                     lambda: _FEW_ROWS[precision](linear, rows))


def _parts(module: nn.Module) -> list[nn.Linear]:
    return [getattr(module, name) for name in module.DECODE_FUSED]


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


def _fused_copy(module: nn.Module, precision: str, rows: int) -> Packed:
    """The reduced-precision copy of module's DECODE_FUSED Linears as one (kept while they are unchanged)."""
    parts = _parts(module)
    rows = rows if precision == "bf16" else 0
    sources = [t for p in parts for t in (p.weight, p.bias)]
    return kept_copy(module, ("fused", precision, rows), sources,
                     lambda: _FEW_ROWS[precision](concatenated(parts), rows))


@contextlib.contextmanager
def decoding_weights(model: nn.Module, precision: str = "fp32", rows: int = 1) -> Iterator[None]:
    """Within the context, the model's CPU Linears decode `rows` rows faster (see module docstring)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    plan = decode_plan(precision, next(model.parameters()).device, rows)
    precision = plan.step
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.weight.device.type == "cpu"]
    relaid, packed, fused = [], [], []
    if precision in _FEW_ROWS or plan.prefill != "fp32":
        with torch.no_grad():
            for m in linears:
                if isinstance(m, Linear):
                    if precision in _FEW_ROWS:
                        m._packed = _reduced_copy(m, precision, rows)
                        m._packed_rows = PACKED_MAX_ROWS[precision]
                    if plan.prefill != "fp32":  # bf16, or int8 (the steps' own copy: rows do not matter)
                        m._bulk = _reduced_copy(m, plan.prefill, BULK_ROWS_HINT)
                    packed.append(m)
            if precision in _FEW_ROWS:  # modules that run several Linears of one input as one GEMM
                for m in model.modules():
                    if getattr(m, "DECODE_FUSED", None) and all(l in packed for l in _parts(m)):
                        m._fused, m._fused_rows = _fused_copy(m, precision, rows), PACKED_MAX_ROWS[precision]
                        fused.append(m)
    if precision == "fp32" and 1 < rows <= 64:
        for m in linears:
            if m.weight.is_contiguous():
                m.weight.data = m.weight.data.t().contiguous().t()
                relaid.append(m.weight)
    try:
        yield
    finally:
        for m in packed:
            m._packed, m._bulk, m._packed_rows = None, None, 0
        for m in fused:
            m._fused, m._fused_rows = None, 0
        for w in relaid:
            w.data = w.data.contiguous()
