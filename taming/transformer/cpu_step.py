"""A whole one-code decoding step of the GPT as one native call on the CPU (int8 weights, int8 cache).

At batch 4 a one-code step of the 26.5M GPT reads ~25 MB of int8 weights and ~13 MB of cache, a
millisecond of memory traffic, but through PyTorch it is ~70 ops a layer (FBGEMM's int8 linears,
layer norms, GELU, residual adds, the attention call), each costing microseconds of dispatch and,
for the linears, ~20 us of fixed cost: ~4 ms a step (BENCHMARKS.md). `taming_int8_step` in
cpu_decode.c runs the same step in one call with int8 dot products built for the CPU class
(AVX512-VNNI, AVX2 or portable C; the same numbers from each: see its comment).

`native_step(gpt, cache, rows)` returns step(token (rows,), pos) -> logits (rows, V), or None where
it does not apply: not the CPU, a cache that is not int8 (decode_plan's "int8" plan has one), a
bidirectional prefix (n_unmasked), or the kernels not built (no C compiler). Callers then run the PyTorch step. The weights are packed
once per model and kept while they are unchanged.

Numbers: the same int8 weights (one scale per output row) as the FBGEMM copies of decoding.py;
activations are quantized per row to 8 bits (FBGEMM: per call, 7 bits), so the step is at least
as close to float32 as the PyTorch int8 step (tests/test_cpu_step.py; validation NLL in
BENCHMARKS.md).
"""
from __future__ import annotations

import ctypes
from typing import Callable

import torch
from torch import nn

from taming.transformer.cpu_attention import library
from taming.transformer.decoding import concatenated, kept_copy
from taming.transformer.gpt import GPT, KVCache

Step = Callable[[torch.Tensor, int], torch.Tensor]
_P, _I = ctypes.c_void_p, ctypes.c_int64


class _PackedLinear(ctypes.Structure):
    _fields_ = [("w", _P), ("scale", _P), ("colsum", _P), ("bias", _P), ("n", _I), ("k", _I), ("kp", _I)]


class _Layer(ctypes.Structure):
    _fields_ = [("ln1_w", _P), ("ln1_b", _P), ("ln2_w", _P), ("ln2_b", _P), ("qkv", _PackedLinear),
                ("proj", _PackedLinear), ("fc1", _PackedLinear), ("fc2", _PackedLinear), ("k_cache", _P),
                ("v_cache", _P), ("k_scale", _P), ("v_scale", _P)]


class _Model(ctypes.Structure):
    _fields_ = [("n_layer", _I), ("n_head", _I), ("n_embd", _I), ("vocab", _I), ("max_len", _I),
                ("eps", ctypes.c_float), ("tok_emb", _P), ("pos_emb", _P), ("layers", ctypes.POINTER(_Layer)),
                ("lnf_w", _P), ("lnf_b", _P), ("head", _PackedLinear)]


class _Scratch(ctypes.Structure):
    _fields_ = [("x", _P), ("h", _P), ("qkv", _P), ("att", _P), ("work", _P), ("ln", _P), ("xq", _P), ("sx", _P)]


def pack_int8(weight: torch.Tensor, bias: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """weight (N, K) float -> the kernel's int8 layout, N padded to Np (a multiple of 16) and K to Kp
    (a multiple of 4) with zeros: w (Np/16, Kp/4, 16, 4), scale (Np,) = max|row| / 127, colsum (Np,)
    int32, bias (Np,) float32; n (N,) the real output count."""
    w = weight.detach().float()
    N, K = w.shape
    scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)  # as decoding.py's FBGEMM copies
    q = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
    b = torch.zeros(N) if bias is None else bias.detach().float()
    Np, Kp = -(-N // 16) * 16, -(-K // 4) * 4
    q = torch.nn.functional.pad(q, (0, Kp - K, 0, Np - N))
    scale, b = torch.nn.functional.pad(scale, (0, Np - N), value=1.0), torch.nn.functional.pad(b, (0, Np - N))
    packed = q.view(Np // 16, 16, Kp // 4, 4).permute(0, 2, 1, 3).contiguous()
    return {"w": packed, "scale": scale.contiguous(), "colsum": q.sum(dim=1, dtype=torch.int32),
            "bias": b.contiguous(), "n": torch.tensor([N])}


def _linear_struct(p: dict[str, torch.Tensor], k: int) -> _PackedLinear:
    return _PackedLinear(p["w"].data_ptr(), p["scale"].data_ptr(), p["colsum"].data_ptr(), p["bias"].data_ptr(),
                         int(p["n"]), k, p["w"].shape[1] * 4)


def _packed(owner: nn.Module, parts: list[nn.Linear]) -> dict[str, torch.Tensor]:
    """The packed int8 copy of the Linears `parts` side by side (kept on owner while unchanged)."""
    sources = [t for p in parts for t in (p.weight, p.bias)]

    def make():
        whole = concatenated(parts)
        return pack_int8(whole.weight, whole.bias)
    return kept_copy(owner, ("native int8",), sources, make)


def applies(gpt: GPT, cache: KVCache) -> bool:
    """Whether the native step can run this model and cache (see the module docstring)."""
    ref = gpt.head.weight
    return (ref.device.type == "cpu" and ref.dtype == torch.float32 and cache.quantized
            and cache.k[0].device.type == "cpu" and gpt.n_unmasked == 0 and not gpt.training and len(gpt.blocks) > 0
            and all(isinstance(b.mlp[1], nn.GELU) and b.mlp[1].approximate == "none" for b in gpt.blocks))


def native_step(gpt: GPT, cache: KVCache, rows: int) -> Step | None:
    """step(token (rows,), pos) -> logits (rows, V) writing position pos of `cache` in one native
    call, or None where it does not apply or is not built here."""
    if not applies(gpt, cache):
        return None
    if cache.batch != rows or len(cache.k) != len(gpt.blocks):
        raise ValueError(f"native_step: a cache of {cache.batch} rows and {len(cache.k)} layers for {rows} rows "
                         f"of a {len(gpt.blocks)}-layer GPT")
    lib = library()
    if lib is None or not lib.taming_step_available():
        return None
    C, nh, V, max_len = gpt.n_embd, gpt.n_head, gpt.vocab_size, cache.max_len
    keep: list[torch.Tensor] = []  # every tensor a pointer refers to stays alive with the step

    def ptr(t: torch.Tensor) -> int:
        t = t.detach().contiguous()
        keep.append(t)
        return t.data_ptr()

    layers = (_Layer * len(gpt.blocks))()
    for i, block in enumerate(gpt.blocks):
        attn, (fc1, _, fc2, _) = block.attn, block.mlp
        packs = {"qkv": _packed(attn, [attn.query, attn.key, attn.value]), "proj": _packed(attn.proj, [attn.proj]),
                 "fc1": _packed(fc1, [fc1]), "fc2": _packed(fc2, [fc2])}
        for p in packs.values():
            keep.extend(p.values())
        layers[i] = _Layer(ptr(block.ln1.weight), ptr(block.ln1.bias), ptr(block.ln2.weight), ptr(block.ln2.bias),
                           _linear_struct(packs["qkv"], C), _linear_struct(packs["proj"], C),
                           _linear_struct(packs["fc1"], C), _linear_struct(packs["fc2"], 4 * C),
                           ptr(cache.k[i]), ptr(cache.v[i]), ptr(cache.k_scale[i]), ptr(cache.v_scale[i]))
    head = _packed(gpt.head, [gpt.head])
    keep.extend(head.values())
    eps = gpt.blocks[0].ln1.eps
    model = _Model(len(gpt.blocks), nh, C, V, max_len, eps, ptr(gpt.tok_emb.weight), ptr(gpt.pos_emb[0]),
                   layers, ptr(gpt.ln_f.weight), ptr(gpt.ln_f.bias), _linear_struct(head, C))
    mp, threads = -(-rows // 4) * 4, torch.get_num_threads()  # per-thread buffers for this many threads
    scratch = _Scratch(*[ptr(t) for t in (
        torch.empty(rows, C), torch.empty(rows, 4 * C), torch.empty(rows, 3 * C), torch.empty(rows, C),
        torch.empty(rows, nh, max_len), torch.empty(threads, rows, C),
        torch.empty(threads, mp, 4 * C, dtype=torch.uint8), torch.empty(threads, mp))])
    model_ref, scratch_ref = ctypes.byref(model), ctypes.byref(scratch)

    def step(token: torch.Tensor, pos: int) -> torch.Tensor:
        if not 0 <= pos < max_len or pos >= gpt.block_size:
            raise ValueError(f"GPT: position {pos} outside a cache of {max_len} (block_size {gpt.block_size})")
        tokens = token.to(torch.int64).contiguous()
        if tokens.shape != (rows,):
            raise ValueError(f"GPT: the native step takes {rows} codes, got shape {tuple(token.shape)}")
        logits = torch.empty(rows, V)
        status = lib.taming_int8_step(model_ref, scratch_ref, tokens.data_ptr(), logits.data_ptr(), rows, pos,
                                      threads)
        if status == -2:
            raise ValueError(f"GPT: codes must be in [0, {V}), got {tokens.tolist()}")
        if status:
            raise RuntimeError("the native int8 step is not built for this CPU")
        return logits

    step._keep = (keep, layers, model, scratch)  # the structures and tensors the kernel reads
    return step


__all__ = ["applies", "native_step", "pack_int8"]
