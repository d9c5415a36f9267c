"""The engine's native code (taming/transformer/cpu_decode.c, compiled for the CPU class by taming.native),
and its largest use: a whole one-code decoding step of the GPT as one call (int8 weights, int8 cache).

At batch 4 a one-code step of the 26.5M GPT reads ~25 MB of int8 weights and ~13 MB of cache, a
millisecond of memory traffic, but through PyTorch it is ~70 ops a layer (FBGEMM's int8 linears,
layer norms, GELU, residual adds, the attention call), each costing microseconds of dispatch and,
for the linears, ~20 us of fixed cost. `taming_int8_step` runs the same step in one call with int8
dot products built for the CPU class: AVX512-VNNI, AVX2 (maddubs/madd) or portable C, the same
numbers from each (see its comment; `STEP_VARIANTS` names them); numbers in BENCHMARKS.md "Why the
decoding plan" and "CPU classes".

`library(isa)` loads the kernels built for CPU class `isa` (default: the detected one, which honours
TAMING_CPU_ISA), or returns None (after one warning) where they cannot be built, and checks the
ctypes structures below against the layout that build exports (`taming_layout`, by field name): a
field added, dropped or moved on one side only raises `LayoutMismatch` naming it, never lets a
kernel read a wrong pointer.

`NativeStep.build(gpt, cache)` is step(token (rows,), pos) -> logits (rows, V) over `cache` (an int8
QuantizedCache), or None where it does not apply (a bidirectional prefix, another activation, not a
float32 CPU model) or the kernels cannot be built (no compiler): the engine then runs the
PyTorch step. Numbers: the same int8 weights (one scale per output row) as the FBGEMM copies of
weights.py; activations quantized per row to 8 bits (FBGEMM: per call, 7 bits), so the step is at
least as close to float32 as the PyTorch int8 step (tests/test_decode_native.py).
"""
from __future__ import annotations

import ctypes
import warnings
from pathlib import Path

import torch
from torch import nn

from taming import native
from taming.transformer.decode.weights import concatenated, kept
from taming.transformer.gpt import GPT, KVCache

SOURCE = Path(__file__).parents[1] / "cpu_decode.c"
_P, _I = ctypes.c_void_p, ctypes.c_int64
STEP_VARIANTS = ("portable", "avx2", "avx512_vnni")  # taming_step_variant(): the build's int8 dot products
_failed = False


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


STRUCTS = {"PackedLinear": _PackedLinear, "StepLayer": _Layer, "StepModel": _Model, "StepScratch": _Scratch}


class LayoutMismatch(RuntimeError):
    """cpu_decode.c's structures and their ctypes mirror here differ."""


def exported_layout(lib: ctypes.CDLL) -> dict[str, dict[str, int]]:
    """{structure: {"sizeof": size, field: offset, ...}} as the C file exports it."""
    out = (ctypes.c_int64 * 256)()
    count = lib.taming_layout(out, len(out))
    numbers = list(out)[:count]
    layout: dict[str, dict[str, int]] = {}
    for name, number in zip(lib.taming_layout_names().decode().split(), numbers, strict=True):
        if name in STRUCTS:
            layout[struct := name] = {"sizeof": number}
        else:
            layout[struct][name] = number
    return layout


def check_layout(exported: dict[str, dict[str, int]]) -> None:
    """Compare the C file's sizes and offsets (`exported_layout`) with STRUCTS', field by field."""
    for c_name, mirror in STRUCTS.items():
        ours = {"sizeof": ctypes.sizeof(mirror), **{name: getattr(mirror, name).offset for name, _ in mirror._fields_}}
        theirs = exported.get(c_name, {})
        for name in sorted(ours.keys() | theirs.keys(), key=lambda n: (n != "sizeof", ours.get(n, -1))):
            if ours.get(name) != theirs.get(name):
                raise LayoutMismatch(f"{SOURCE.name}'s {c_name} and its ctypes mirror {mirror.__name__} in {__file__} "
                                     f"differ at {name}: {theirs.get(name, 'absent')} in C, {ours.get(name, 'absent')} "
                                     "here (edit both together)")


def library(isa: str | None = None) -> ctypes.CDLL | None:
    """The kernels of cpu_decode.c built for CPU class `isa` (default: the detected one), layout
    checked, or None (after one warning) where they cannot be built here."""
    global _failed
    if _failed:
        return None
    try:
        lib = native.load(SOURCE, isa)
    except native.NativeUnavailable as err:
        _failed = True
        warnings.warn(f"sampling on the CPU: the native decoding kernels are unavailable ({err}); "
                      "running them as PyTorch ops (slower)", RuntimeWarning, stacklevel=3)
        return None
    if not getattr(lib, "_taming_checked", False):
        lib.taming_layout.argtypes, lib.taming_layout.restype = [ctypes.POINTER(_I), _I], _I
        lib.taming_layout_names.restype = ctypes.c_char_p
        check_layout(exported_layout(lib))
        lib.taming_attend.argtypes = [_P] * 7 + [_I] * 5 + [ctypes.c_int]
        lib.taming_attend.restype = None
        lib.taming_step_variant.restype = ctypes.c_int
        lib.taming_int8_step.argtypes = [_P] * 4 + [_I] * 2 + [ctypes.c_int]
        lib.taming_int8_step.restype = ctypes.c_int
        lib.taming_int8_linear.argtypes = [_P, _P, _I, _P, _P, _P]
        lib.taming_int8_linear.restype = None
        lib.taming_draw.argtypes, lib.taming_draw.restype = [_P, _P, _I, _I, _P], None
        lib._taming_checked = True
    return lib


def pack_int8(weight: torch.Tensor, bias: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """weight (N, K) float -> the kernel's int8 layout, N padded to Np (a multiple of 16) and K to Kp
    (a multiple of 4) with zeros: w (Np/16, Kp/4, 16, 4), scale (Np,) = max|row| / 127, colsum (Np,)
    int32, bias (Np,) float32; n (N,) the real output count."""
    w = weight.detach().float()
    N, K = w.shape
    scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)  # as weights.py's FBGEMM copies
    q = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
    b = torch.zeros(N) if bias is None else bias.detach().float()
    Np, Kp = -(-N // 16) * 16, -(-K // 4) * 4
    q = torch.nn.functional.pad(q, (0, Kp - K, 0, Np - N))
    scale, b = torch.nn.functional.pad(scale, (0, Np - N), value=1.0), torch.nn.functional.pad(b, (0, Np - N))
    packed = q.view(Np // 16, 16, Kp // 4, 4).permute(0, 2, 1, 3).contiguous()
    return {"w": packed, "scale": scale.contiguous(), "colsum": q.sum(dim=1, dtype=torch.int32),
            "bias": b.contiguous(), "n": torch.tensor([N])}


def _packed(parts: list[nn.Linear]) -> dict[str, torch.Tensor]:
    """The packed int8 copy of the Linears `parts` side by side (kept while their weights are unchanged)."""
    def make():
        whole = concatenated(parts)
        return pack_int8(whole.weight, whole.bias)
    return kept("native int8", [t for p in parts for t in (p.weight, p.bias)], make)


def applies(gpt: GPT, cache: KVCache) -> bool:
    """Whether the native step computes this model over this cache (see the module docstring)."""
    ref = gpt.head.weight
    return (ref.device.type == "cpu" and ref.dtype == torch.float32 and cache.k[0].dtype == torch.int8
            and cache.k[0].device.type == "cpu" and gpt.n_unmasked == 0 and len(gpt.blocks) > 0
            and all(isinstance(b.mlp[1], nn.GELU) and b.mlp[1].approximate == "none" for b in gpt.blocks))


class NativeStep:
    """step(token (rows,), pos) -> logits (rows, V), writing position pos of its cache in one native
    call; it holds every tensor and structure the kernel reads."""

    def __init__(self, gpt: GPT, cache: KVCache, lib: ctypes.CDLL):
        C, nh = gpt.n_embd, gpt.n_head
        self.lib, self.rows, self.vocab, self.max_len = lib, cache.batch, gpt.vocab_size, min(cache.max_len, gpt.block_size)
        self.keep: list[torch.Tensor] = []  # every tensor a pointer refers to stays alive with the step
        self.layers = (_Layer * len(gpt.blocks))()
        for i, block in enumerate(gpt.blocks):
            attn, (fc1, _, fc2, _) = block.attn, block.mlp
            packs = [self._pack([attn.query, attn.key, attn.value]), self._pack([attn.proj]), self._pack([fc1]),
                     self._pack([fc2])]
            self.layers[i] = _Layer(*map(self._ptr, (block.ln1.weight, block.ln1.bias, block.ln2.weight, block.ln2.bias)),
                                    *(self._linear(p, k) for p, k in zip(packs, (C, C, C, 4 * C))),
                                    *map(self._ptr, (cache.k[i], cache.v[i], cache.k_scale[i], cache.v_scale[i])))
        self.model = _Model(len(gpt.blocks), nh, C, self.vocab, cache.max_len, gpt.blocks[0].ln1.eps,
                            self._ptr(gpt.tok_emb.weight), self._ptr(gpt.pos_emb[0]), self.layers,
                            self._ptr(gpt.ln_f.weight), self._ptr(gpt.ln_f.bias), self._linear(self._pack([gpt.head]), C))
        rows, mp, threads = self.rows, -(-self.rows // 4) * 4, torch.get_num_threads()  # per-thread buffers
        self.threads = threads
        self.scratch = _Scratch(*map(self._ptr, (
            torch.empty(rows, C), torch.empty(rows, 4 * C), torch.empty(rows, 3 * C), torch.empty(rows, C),
            torch.empty(rows, nh, cache.max_len), torch.empty(threads, rows, C),
            torch.empty(threads, mp, 4 * C, dtype=torch.uint8), torch.empty(threads, mp))))

    @classmethod
    def build(cls, gpt: GPT, cache: KVCache) -> NativeStep | None:
        """The step over `cache`, or None where it does not apply or the kernels cannot be built here."""
        if not applies(gpt, cache):
            return None
        if len(cache.k) != len(gpt.blocks):
            raise ValueError(f"native step: a cache of {len(cache.k)} layers for a {len(gpt.blocks)}-layer GPT")
        lib = library()
        return None if lib is None else cls(gpt, cache, lib)

    def _ptr(self, t: torch.Tensor) -> int:
        t = t.detach().contiguous()
        self.keep.append(t)
        return t.data_ptr()

    def _pack(self, parts: list[nn.Linear]) -> dict[str, torch.Tensor]:
        p = _packed(parts)
        self.keep.extend(p.values())
        return p

    @staticmethod
    def _linear(p: dict[str, torch.Tensor], k: int) -> _PackedLinear:
        return _PackedLinear(p["w"].data_ptr(), p["scale"].data_ptr(), p["colsum"].data_ptr(), p["bias"].data_ptr(),
                             int(p["n"]), k, p["w"].shape[1] * 4)

    def __call__(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        if not 0 <= pos < self.max_len:
            raise ValueError(f"GPT: position {pos} outside a cache of {self.max_len}")
        tokens = token.to(torch.int64).contiguous()
        if tokens.shape != (self.rows,):
            raise ValueError(f"GPT: the native step takes {self.rows} codes, got shape {tuple(token.shape)}")
        logits = torch.empty(self.rows, self.vocab)
        status = self.lib.taming_int8_step(ctypes.byref(self.model), ctypes.byref(self.scratch), tokens.data_ptr(),
                                           logits.data_ptr(), self.rows, pos, self.threads)
        if status == -2:
            raise ValueError(f"GPT: codes must be in [0, {self.vocab}), got {tokens.tolist()}")
        return logits


__all__ = ["STEP_VARIANTS", "LayoutMismatch", "NativeStep", "applies", "check_layout", "exported_layout", "library",
           "pack_int8"]
