"""The native step's builds for every CPU class this machine runs (taming.native, cpu_decode.c through
taming/transformer/decode/native.py): each passes the layout check of the ctypes mirror, and
AVX512-VNNI, AVX2 (maddubs) and portable C compute bit-identical numbers, down to one Linear with
inputs that would saturate a naive AVX2 dot product, the logits of whole steps, and sampled codes."""
import ctypes

import pytest
import torch

from taming import hardware
from taming import native as native_build
from taming.sampling import generate
from taming.transformer.decode import Decoder, native
from test_decode_engine import AMD_INT8
from test_decode_native import model

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models

MACHINE = hardware.detect("cpu").machine_isa or hardware.detect("cpu").isa
CLASSES = hardware.runnable_isas(MACHINE)  # the machine's own class and every one below it


LIBRARY = native.library  # the tests below put one build in its place


def build(isa: str):
    """cpu_decode.c built for class `isa`, its layout checked against the ctypes mirror (LayoutMismatch if not)."""
    lib = LIBRARY(isa)
    assert lib is not None  # this project's machines have gcc
    return lib


def expected_variant(isa: str) -> str:
    """The int8 dot products a class gets: VNNI where the class has AVX-512 and the CPU VNNI."""
    x86 = native_build.platform.machine().lower() in ("x86_64", "amd64")
    if isa in ("amx_bf16", "avx512_bf16", "avx512") and "avx512_vnni" in hardware.cpu_flags():
        return "avx512_vnni"
    return "portable" if isa == "baseline" or not x86 else "avx2"


@pytest.mark.parametrize("isa", CLASSES)
def test_each_class_builds_its_variant_with_the_checked_layout(isa):
    lib = build(isa)
    assert native.STEP_VARIANTS[lib.taming_step_variant()] == expected_variant(isa)
    native.check_layout(native.exported_layout(lib))  # what library() checked: the same structures in every build
    assert native.exported_layout(lib) == native.exported_layout(build(MACHINE))


def test_the_classes_below_the_machines_cover_the_variants():
    """On an x86 CPU with AVX2, at least the AVX2 and portable builds run here (the AVX-512 one too on
    this project's machines), so the comparisons below are not between one build and itself."""
    variants = {expected_variant(isa) for isa in CLASSES}
    if "avx2" in CLASSES and native_build.platform.machine().lower() in ("x86_64", "amd64"):
        assert {"avx2", "portable"} <= variants
    assert variants <= set(native.STEP_VARIANTS)


def linear_bits(lib, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One int8 Linear as the step runs it: x (m, k) float32 -> (m, n)."""
    packed = native.pack_int8(weight, bias)
    m, k = x.shape
    mp, kp = -(-m // 4) * 4, packed["w"].shape[1] * 4
    y = torch.empty(m, weight.shape[0])
    xq, sx = torch.empty(mp, kp, dtype=torch.uint8), torch.empty(mp)
    x = x.contiguous()
    lib.taming_int8_linear(ctypes.byref(native.NativeStep._linear(packed, k)), x.data_ptr(), m, y.data_ptr(),
                           xq.data_ptr(), sx.data_ptr())
    return y


def linear_reference(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The same Linear with the integer sums exact (int64) and the float steps as the kernel orders them."""
    ws = (weight.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
    w = (weight / ws[:, None]).round().clamp(-127, 127).to(torch.int64)
    sx = x.abs().amax(dim=1).clamp_min(1e-30) / 127.0
    a = torch.round(x * (1.0 / sx)[:, None]).to(torch.int64)  # nearbyintf(x * (1 / s)): half to even
    acc = (a @ w.T).to(torch.float32)
    return acc * (ws[None, :] * sx[:, None]) + bias


@pytest.mark.parametrize("isa", CLASSES)
def test_one_linear_is_exact_even_where_a_naive_avx2_dot_saturates(isa):
    """Activations at +-127 against weights of +-127 of the same sign: a pair of products is 32258,
    and 64770 with VNNI's zero point 128 (vpmaddubsw would saturate at 32767). Every build gives the
    exact integer sums: the reference's numbers, bit for bit."""
    lib = build(isa)
    g = torch.Generator().manual_seed(0)
    n, k = 40, 70  # neither a multiple of 16 nor of 4: the padding too
    sign = torch.randint(0, 2, (k,), generator=g).float() * 2 - 1
    weight = torch.cat([sign.expand(20, k), torch.randn(20, k, generator=g)]) * 0.3  # rows at +-max
    x = torch.cat([sign.expand(3, k) * 5, -sign.expand(2, k), torch.randn(4, k, generator=g)])  # +-127 after quantizing
    bias = torch.randn(n, generator=g)
    want = linear_reference(weight, bias, x)
    got = linear_bits(lib, weight, bias, x)
    assert torch.equal(got, want)
    assert want[0, 0] == pytest.approx(k * 5 * 0.3 + float(bias[0]), rel=1e-5)  # 70 products of 127 * 127


def steps_with(monkeypatch, lib, gpt, cond: torch.Tensor, steps: int) -> torch.Tensor:
    """Logits (B, steps, V) of the native step built as `lib`, after a prefill of cond."""
    B, L = cond.shape
    monkeypatch.setattr(native, "library", lambda: lib)
    dec = Decoder(gpt, AMD_INT8, B)
    with dec.running():
        cache = dec.new_cache(L + steps)
        step = dec.stepper(cache)
        assert isinstance(step, native.NativeStep)
        dec.forward(cond, cache, 0)
        return torch.stack([step((cond[:, k] * 7 + k) % gpt.vocab_size, L + k) for k in range(steps)], 1)


@pytest.mark.parametrize("isa", CLASSES)
@pytest.mark.parametrize("dims", [{}, dict(vocab_size=20, n_embd=24, n_head=3)])  # widths off the 16-blocks
def test_every_build_computes_the_same_logits(monkeypatch, isa, dims):
    """Bit for bit: the integer sums are exact and every float sum runs in one order (16 lanes, a
    fixed tree), compiled without reassociation or FMA contraction."""
    gpt = model(**dims)
    for batch, threads in ((1, 1), (5, 2), (9, 3)):
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)  # what the step hands the kernel
        cond = torch.randint(0, gpt.vocab_size, (batch, 12), generator=torch.Generator().manual_seed(batch))
        want = steps_with(monkeypatch, build(MACHINE), gpt, cond, 10)
        assert torch.equal(steps_with(monkeypatch, build(isa), gpt, cond, 10), want), (isa, batch, threads)


@pytest.mark.parametrize("isa", CLASSES)
def test_every_build_samples_the_same_codes(monkeypatch, isa):
    gpt = model()
    cond = torch.randint(0, 32, (4, 10), generator=torch.Generator().manual_seed(3))

    def sample(lib):
        monkeypatch.setattr(native, "library", lambda: lib)
        return generate(gpt, cond, 20, top_k=10, generator=torch.Generator().manual_seed(7), precision="int8")
    assert torch.equal(sample(build(isa)), sample(build(MACHINE)))
