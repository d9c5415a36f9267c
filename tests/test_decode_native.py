"""The engine's native code (taming/transformer/cpu_decode.c through decode/native.py and attention.py):
the one-code attention kernel against float32 SDPA, the int8 cache, the layout check of the ctypes
mirror, and the whole int8 step: its weight layout, its logits against float32 and against PyTorch's
int8 step, what it refuses, and `generate` through it. On this run's CPU class (tests/cpu_classes.py
runs each; every class has the step); tests/test_cpu_classes.py compares the builds of every class."""
import ctypes

import pytest
import torch
import torch.nn.functional as F

from taming import native as native_build
from taming.precision import DecodePlan
from taming.sampling import generate, sequence_nll
from taming.transformer.decode import Decoder, attention, native
from taming.transformer.decode.attention import QuantizedCache, attend_step, quantize_vectors
from taming.transformer.gpt import GPT
from test_decode_engine import AMD_INT8, rel_err
from test_decode_engine import model as engine_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models

BF16, FP32, INT8 = torch.bfloat16, torch.float32, torch.int8
lib = native.library()
PYTORCH_INT8 = DecodePlan("int8", "bf16", INT8)  # the same plan, the one-code steps as PyTorch ops


def model(seed: int = 0, **kw) -> GPT:
    return engine_model(seed, **{"vocab_size": 32, **kw})


# ---- the one-code attention ------------------------------------------------------------------------
def step_inputs(dtype: torch.dtype, B: int = 3, nh: int = 2, hd: int = 8, max_len: int = 21, seed: int = 0):
    """A random fused q|k|v (B, 1, 3C) and a cache of max_len positions holding random earlier ones."""
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(B, 1, 3 * nh * hd, generator=g)
    if dtype == INT8:
        k, v = (torch.randint(-127, 128, (B, nh, max_len, hd), dtype=INT8, generator=g) for _ in range(2))
        scales = [torch.rand(B, nh, max_len, 1, generator=g) / 100 for _ in range(2)]
        return qkv, k, v, scales
    return qkv, torch.randn(B, nh, max_len, hd, generator=g).to(dtype), torch.randn(B, nh, max_len, hd, generator=g).to(dtype), []


def reference_step(qkv, k, v, scales, pos):
    """Eager reference: the new key/value as QuantizedCache.write stores them, then float32 SDPA over
    the dequantized cache [0, pos] -> (B, 1, C), and the written cache."""
    k, v, scales = k.clone(), v.clone(), [s.clone() for s in scales]
    B, nh, _, hd = k.shape
    q, new_k, new_v = qkv.view(B, 3, nh, 1, hd).unbind(1)
    for i, (x, store) in enumerate(((new_k, k), (new_v, v))):
        if scales:
            x, scales[i][:, :, pos:pos + 1] = quantize_vectors(x)
        store[:, :, pos:pos + 1] = x.to(store.dtype)
    kf, vf = k[:, :, :pos + 1].float(), v[:, :, :pos + 1].float()
    if scales:
        kf, vf = kf * scales[0][:, :, :pos + 1], vf * scales[1][:, :, :pos + 1]
    y = F.scaled_dot_product_attention(q, kf, vf)  # (B, nh, 1, hd)
    return y.transpose(1, 2).reshape(B, 1, nh * hd), k, v, scales


@pytest.mark.parametrize("dtype", [BF16, INT8])
def test_attention_kernel_writes_the_cache_and_equals_float32_sdpa(dtype):
    qkv, k, v, scales = step_inputs(dtype)
    for pos in (12, 13, 20, 0, 5):
        want, wk, wv, wscales = reference_step(qkv, k, v, scales, pos)
        got = attend_step(qkv, k, v, pos, *scales)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert torch.equal(k, wk) and torch.equal(v, wv)  # the same numbers QuantizedCache.write stores
        for s, ws in zip(scales, wscales):
            torch.testing.assert_close(s, ws, rtol=1e-6, atol=0)
    assert lib is not None  # it was built here (the machines of this project have gcc)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_attention_kernel_at_any_thread_count_and_head_size(threads):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for hd in (5, 16, 64, 96):
            qkv, k, v, scales = step_inputs(INT8, B=2, nh=3, hd=hd, max_len=9, seed=hd)
            want, wk, _, _ = reference_step(qkv, k, v, scales, 8)
            torch.testing.assert_close(attend_step(qkv, k, v, 8, *scales), want, rtol=1e-5, atol=1e-5)
            assert torch.equal(k, wk)
    finally:
        torch.set_num_threads(old)


def test_attention_takes_layouts_it_cannot_read_the_slow_way():
    qkv, k, v, scales = step_inputs(BF16)
    want, *_ = reference_step(qkv, k, v, scales, 7)
    wide = torch.cat([qkv, qkv], dim=-1)[..., :qkv.shape[-1]]  # not contiguous
    torch.testing.assert_close(attend_step(wide, k, v, 7), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="position 21 outside a cache of 21"):
        attend_step(qkv, k, v, 21)
    # sizes that do not match the cache never reach the kernel (it would read past them)
    with pytest.raises(RuntimeError):
        attend_step(qkv[..., :-8], k, v, 7)
    int8_qkv, ik, iv, (ks, vs) = step_inputs(INT8)
    with pytest.raises(RuntimeError):
        attend_step(int8_qkv, ik, iv, 7, ks[:, :, :5], vs)


def test_int8_cache_round_trip():
    cache = QuantizedCache(1, 2, 2, 6, 8)
    k, v = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 4, 8) * 5
    cache.write(0, 1, k, v)
    gk, gv = cache.read(0, 5, FP32)
    for got, want in ((gk[:, :, 1:], k), (gv[:, :, 1:], v)):  # within half a step of each vector's scale
        step = want.abs().amax(-1, keepdim=True) / 127
        assert ((got - want).abs() <= step / 2 + 1e-6).all()


@pytest.mark.parametrize("dtype", [BF16, INT8])
def test_attention_falls_back_to_pytorch_ops_without_a_compiler(monkeypatch, dtype):
    def broken(source, isa=None):
        raise native_build.NativeUnavailable("no C compiler found (install gcc, or set CC)")
    monkeypatch.setattr(native, "_failed", False)
    monkeypatch.setattr(native_build, "load", broken)
    qkv, k, v, scales = step_inputs(dtype, seed=1)
    want, wk, wv, _ = reference_step(qkv, k, v, scales, 9)
    with pytest.warns(RuntimeWarning, match="kernels are unavailable .no C compiler found.*PyTorch ops"):
        got = attend_step(qkv, k, v, 9, *scales)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(k, wk) and torch.equal(v, wv)
    assert NativeStepBuild(model(), 2) is None  # and no native step


# ---- the layout of the C structures ----------------------------------------------------------------
def test_the_ctypes_mirror_matches_the_c_structures():
    exported = native.exported_layout(lib)
    native.check_layout(exported)  # what library() checked when it loaded
    assert list(exported) == list(native.STRUCTS)
    for c_name, mirror in native.STRUCTS.items():
        assert list(exported[c_name]) == ["sizeof", *(name for name, _ in mirror._fields_)]


def test_a_layout_mismatch_is_one_clear_error(monkeypatch):
    class Reordered(ctypes.Structure):  # two fields of one type exchanged in the mirror, as a careless edit would
        _fields_ = [(n, t) for n, t in native._Layer._fields_ if n not in ("k_cache", "v_cache")]
        _fields_[8:8] = [("v_cache", ctypes.c_void_p), ("k_cache", ctypes.c_void_p)]
    monkeypatch.setitem(native.STRUCTS, "StepLayer", Reordered)
    monkeypatch.setattr(lib, "_taming_checked", False)  # loaded again: checked again
    with pytest.raises(native.LayoutMismatch, match="StepLayer and its ctypes mirror Reordered .* differ at "
                                                    "v_cache: 264 in C, 256 here"):
        native.library()
    monkeypatch.setitem(native.STRUCTS, "StepLayer", native._Layer)
    exported = native.exported_layout(lib)
    del exported["StepScratch"]["sx"]  # a field the C file no longer has
    with pytest.raises(native.LayoutMismatch, match="StepScratch .* differ at sx: absent in C, 56 here"):
        native.check_layout(exported)
    assert native.library() is lib


# ---- the whole int8 step ---------------------------------------------------------------------------
def NativeStepBuild(gpt: GPT, rows: int):
    return native.NativeStep.build(gpt, QuantizedCache(gpt.n_layer, rows, gpt.n_head, 20, gpt.n_embd // gpt.n_head))


def test_pack_int8_layout():
    w = torch.randn(32, 10)
    p = native.pack_int8(w, None)
    scale = w.abs().amax(1) / 127
    q = (w / scale[:, None]).round().to(INT8)
    assert p["w"].shape == (2, 3, 16, 4)  # 10 inputs padded to 12
    for n in (0, 17, 31):
        for k in (0, 5, 9):
            assert p["w"][n // 16, k // 4, n % 16, k % 4] == q[n, k]
        assert (p["w"][n // 16, 2, n % 16, 2:] == 0).all()  # the padding
    torch.testing.assert_close(p["scale"], scale)
    assert torch.equal(p["colsum"], q.sum(1, dtype=torch.int32))
    assert torch.equal(p["bias"], torch.zeros(32)) and int(p["n"]) == 32
    back = p["w"].permute(0, 2, 1, 3).reshape(32, 12)[:, :10].float() * scale[:, None]
    assert ((back - w).abs() <= scale[:, None] / 2 + 1e-7).all()  # within half a step of each row's scale
    b = torch.randn(20)  # 20 outputs: padded to 32 with zero rows, zero bias, unit scales; n says 20
    p = native.pack_int8(w[:20], b)
    assert p["w"].shape == (2, 3, 16, 4) and int(p["n"]) == 20
    assert (p["w"][1, :, 4:] == 0).all() and torch.equal(p["bias"][:20], b) and (p["bias"][20:] == 0).all()


def steps_logits(gpt: GPT, cond: torch.Tensor, steps: int, plan: DecodePlan) -> torch.Tensor:
    """Logits (B, steps, V) of generate's one-code steps (the plan's backend) after a prefill of cond."""
    B, L = cond.shape
    dec = Decoder(gpt, plan, B)
    with dec.running():
        cache = dec.new_cache(L + steps)
        step = dec.stepper(cache)
        assert isinstance(step, native.NativeStep) == (plan.backend == "native")
        dec.forward(cond, cache, 0)
        return torch.stack([step((cond[:, k] * 7 + k) % gpt.vocab_size, L + k) for k in range(steps)], 1)


@pytest.mark.parametrize("batch", [1, 4, 5, 9])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dims", [{}, dict(vocab_size=20, n_embd=24, n_head=3)])  # widths off the 16-blocks
def test_native_step_is_as_close_to_float32_as_the_pytorch_int8_step(monkeypatch, batch, threads, dims):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)  # what the step hands the kernel
    gpt = model(**dims)
    cond = torch.randint(0, gpt.vocab_size, (batch, 12), generator=torch.Generator().manual_seed(batch))
    exact = steps_logits(gpt, cond, 10, DecodePlan("fp32", "fp32", FP32))
    native_steps = steps_logits(gpt, cond, 10, AMD_INT8)
    pytorch_int8 = steps_logits(gpt, cond, 10, PYTORCH_INT8)
    err, ref = rel_err(native_steps, exact), rel_err(pytorch_int8, exact)
    assert err.max() < 5e-2 and err.mean() < 1.2 * ref.mean(), (err, ref)  # measured: 0.64-0.86x the PyTorch error
    assert err.min() > 0  # int8, not float32


def test_a_wrong_weight_is_far_outside_the_tolerance(monkeypatch):
    gpt = model(seed=5)  # weights of its own: no copy kept from another test
    cond = torch.randint(0, 32, (4, 12), generator=torch.Generator().manual_seed(0))
    exact = steps_logits(gpt, cond, 4, DecodePlan("fp32", "fp32", FP32))
    real = native.pack_int8

    def swapped(weight, bias):  # query and key exchanged in the fused copy
        if weight.shape[0] == 96:
            weight = torch.cat([weight[32:64], weight[:32], weight[64:]])
        return real(weight, bias)
    monkeypatch.setattr(native, "pack_int8", swapped)
    err = rel_err(steps_logits(gpt, cond, 4, AMD_INT8), exact)
    assert err.min() > 0.1


def test_generate_goes_through_the_plans_backend(monkeypatch):
    gpt = model()
    cond = torch.randint(0, 32, (6, 10), generator=torch.Generator().manual_seed(2))
    built = []
    real = native.NativeStep.__dict__["build"]
    monkeypatch.setattr(native.NativeStep, "build", classmethod(lambda cls, *a: built.append(real.__func__(cls, *a))
                                                                or built[-1]))

    def run(seed):
        return generate(gpt, cond, 12, top_k=10, generator=torch.Generator().manual_seed(seed), precision="auto")
    first = run(3)
    from taming.precision import resolve
    native_plan = resolve("auto", "cpu").decode.backend == "native"
    assert len(built) == native_plan and all(s is not None for s in built)
    assert torch.equal(first, run(3)) and not torch.equal(first, run(4))
    exact = generate(gpt, cond, 12, greedy=True)
    assert (generate(gpt, cond, 12, greedy=True, precision="auto") == exact).float().mean() > 0.8


def test_native_step_refuses_bad_codes_and_positions():
    gpt = model()
    dec = Decoder(gpt, AMD_INT8, 2)
    with dec.running():
        step = dec.stepper(dec.new_cache(20))
        with pytest.raises(ValueError, match=r"codes must be in \[0, 32\), got \[3, 32\]"):
            step(torch.tensor([3, 32]), 5)
        with pytest.raises(ValueError, match="takes 2 codes, got shape .3,."):
            step(torch.tensor([1, 2, 3]), 5)
        with pytest.raises(ValueError, match="position 20 outside a cache of 20"):
            step(torch.tensor([1, 2]), 20)
        with pytest.raises(ValueError, match="a cache of 2 layers for a 3-layer GPT"):
            native.NativeStep.build(model(n_layer=3), dec.new_cache(20))


def test_native_step_applies_only_where_it_computes_the_model():
    gpt = model()
    dec = Decoder(gpt, AMD_INT8, 2)
    assert not native.applies(gpt, gpt.new_cache(2, 20, dtype=FP32))  # a float cache
    assert not native.applies(gpt, gpt.new_cache(2, 20, dtype=BF16))
    assert native.applies(gpt, dec.new_cache(20))
    other = model(n_unmasked=4)  # a bidirectional prefix: positions need masks the step does not take
    assert not native.applies(other, Decoder(other, AMD_INT8, 2).new_cache(20))
    tanh = model()
    for block in tanh.blocks:
        block.mlp[1] = torch.nn.GELU(approximate="tanh")
    assert not native.applies(tanh, dec.new_cache(20))


def test_native_step_is_built_for_this_class_and_none_without_kernels(monkeypatch):
    """AVX512-VNNI, AVX2 or portable C: every class has the step (tests/test_cpu_classes.py: the same numbers)."""
    gpt = model()
    assert isinstance(NativeStepBuild(gpt, 2), native.NativeStep)
    monkeypatch.setattr(native, "library", lambda: None)  # no C compiler
    assert NativeStepBuild(gpt, 2) is None
    dec = Decoder(gpt, AMD_INT8, 2)
    with dec.running():
        assert not isinstance(dec.stepper(dec.new_cache(20)), native.NativeStep)  # the PyTorch step instead


def test_sequence_nll_in_float32_is_the_teacher_forced_cross_entropy():
    gpt = model()
    cond = torch.randint(0, 32, (3, 7), generator=torch.Generator().manual_seed(4))
    codes = torch.randint(0, 32, (3, 9), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits, _ = gpt(torch.cat([cond, codes[:, :-1]], dim=1))
    want = torch.nn.functional.cross_entropy(logits[:, 6:].transpose(1, 2), codes, reduction="none")
    torch.testing.assert_close(sequence_nll(gpt, cond, codes), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="exceed the GPT's block_size 40"):
        sequence_nll(gpt, cond, torch.zeros(3, 40, dtype=torch.long))
    with pytest.raises(ValueError, match=r"codes \(B, S >= 1\), got \(3, 7\) and \(2, 9\)"):
        sequence_nll(gpt, cond, codes[:2])


def test_sequence_nll_of_the_int8_plan_is_close_to_float32():
    gpt = model()
    cond = torch.randint(0, 32, (4, 12), generator=torch.Generator().manual_seed(6))
    codes = torch.randint(0, 32, (4, 20), generator=torch.Generator().manual_seed(7))
    exact = sequence_nll(gpt, cond, codes)
    reduced = sequence_nll(gpt, cond, codes, precision="int8")
    assert 0 < (reduced - exact).abs().mean() < 0.01 * exact.mean()  # reduced, and close


def test_concatenated_linears_compute_the_parts_side_by_side():
    from taming.transformer.decode.weights import concatenated

    torch.manual_seed(0)
    parts = [torch.nn.Linear(6, 4), torch.nn.Linear(6, 3, bias=False), torch.nn.Linear(6, 2)]
    x = torch.randn(5, 6)
    with torch.no_grad():
        torch.testing.assert_close(concatenated(parts)(x), torch.cat([p(x) for p in parts], dim=-1))
        assert concatenated(parts[1:2]).bias is None
