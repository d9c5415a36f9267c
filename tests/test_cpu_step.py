"""The native one-code step (taming/transformer/cpu_step.py, cpu_decode.c): its weight layout, its
logits against float32 and against PyTorch's int8 step, what it refuses, and `generate` through it.
On this run's CPU class (tests/cpu_classes.py runs each); tests/test_cpu_classes.py compares the
builds of every class."""
import pytest
import torch

from taming import hardware
from taming.sampling import _decoder, generate, prefill, sequence_nll
from taming.transformer import cpu_attention, cpu_step
from taming.transformer.gpt import GPT
from test_decode_plan import AMD, fake, rel_err

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models

INT8 = torch.int8


def model(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    dims = dict(vocab_size=32, block_size=40, n_layer=2, n_head=2, n_embd=32) | kw
    gpt = GPT(**dims).eval()
    with torch.no_grad():
        for p in gpt.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return gpt


def test_pack_int8_layout():
    w = torch.randn(32, 10)
    p = cpu_step.pack_int8(w, None)
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
    # dequantized, within half a step of each row's scale
    back = p["w"].permute(0, 2, 1, 3).reshape(32, 12)[:, :10].float() * scale[:, None]
    assert ((back - w).abs() <= scale[:, None] / 2 + 1e-7).all()
    # 20 outputs: padded to 32 with zero rows, zero bias, unit scales; n says 20
    b = torch.randn(20)
    p = cpu_step.pack_int8(w[:20], b)
    assert p["w"].shape == (2, 3, 16, 4) and int(p["n"]) == 20
    assert (p["w"][1, :, 4:] == 0).all() and torch.equal(p["bias"][:20], b) and (p["bias"][20:] == 0).all()


def steps_logits(gpt: GPT, cond: torch.Tensor, steps: int, how: str) -> torch.Tensor:
    """Logits (B, steps, V) of one-code steps after a prefill of cond: "fp32" (exact), "int8"
    (PyTorch's int8 step) or "native"."""
    B, L = cond.shape
    precision = "fp32" if how == "fp32" else "int8"
    with gpt.decoding(precision, B), torch.inference_mode():
        cache = gpt.new_cache(B, L + steps, dtype=torch.float32 if how == "fp32" else INT8)
        prefill(gpt, cond, cache)
        native = cpu_step.native_step(gpt, cache, B) if how == "native" else None
        assert (native is not None) == (how == "native")
        out = []
        for k in range(steps):
            token = (cond[:, k] * 7 + k) % gpt.vocab_size
            out.append(native(token, L + k) if native else gpt.forward_with_cache(token[:, None], cache, L + k,
                                                                                  last_only=True))
    return torch.stack(out, 1)


@pytest.mark.parametrize("batch", [1, 4, 5, 9])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dims", [{}, dict(vocab_size=20, n_embd=24, n_head=3)])  # widths off the 16-blocks
def test_native_step_is_as_close_to_float32_as_the_pytorch_int8_step(monkeypatch, batch, threads, dims):
    fake(monkeypatch, AMD)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)  # what the step hands the kernel
    gpt = model(**dims)
    cond = torch.randint(0, gpt.vocab_size, (batch, 12), generator=torch.Generator().manual_seed(batch))
    exact = steps_logits(gpt, cond, 10, "fp32")
    native = steps_logits(gpt, cond, 10, "native")
    pytorch_int8 = steps_logits(gpt, cond, 10, "int8")
    err, ref = rel_err(native, exact), rel_err(pytorch_int8, exact)
    assert err.max() < 5e-2 and err.mean() < 1.2 * ref.mean(), (err, ref)  # measured: 0.64-0.86x the PyTorch error
    assert err.min() > 0  # int8, not float32


def test_a_wrong_weight_is_far_outside_the_tolerance(monkeypatch):
    fake(monkeypatch, AMD)
    gpt = model()
    cond = torch.randint(0, 32, (4, 12), generator=torch.Generator().manual_seed(0))
    exact = steps_logits(gpt, cond, 4, "fp32")
    real = cpu_step.pack_int8

    def swapped(weight, bias):  # query and key exchanged in the fused copy
        if weight.shape[0] == 96:
            weight = torch.cat([weight[32:64], weight[:32], weight[64:]])
        return real(weight, bias)
    monkeypatch.setattr(cpu_step, "pack_int8", swapped)
    for block in gpt.blocks:  # the kept copies are rebuilt with the swap
        block.attn.__dict__.pop("_reduced", None)
    assert rel_err(steps_logits(gpt, cond, 4, "native"), exact).min() > 0.1


def test_generate_goes_through_the_native_step(monkeypatch):
    fake(monkeypatch, AMD)
    gpt = model()
    cond = torch.randint(0, 32, (6, 10), generator=torch.Generator().manual_seed(2))
    calls = []
    real = cpu_step.native_step

    def counted(*args):
        step = real(*args)
        calls.append(step is not None)
        return step
    monkeypatch.setattr("taming.sampling.native_step", counted)

    def run(seed):
        return generate(gpt, cond, 12, top_k=10, generator=torch.Generator().manual_seed(seed), precision="auto")
    first = run(3)
    assert calls == [True]
    assert torch.equal(first, run(3)) and not torch.equal(first, run(4))
    exact = generate(gpt, cond, 12, greedy=True)
    assert (generate(gpt, cond, 12, greedy=True, precision="auto") == exact).float().mean() > 0.8


def test_native_step_refuses_bad_codes_and_positions(monkeypatch):
    fake(monkeypatch, AMD)
    gpt = model()
    with gpt.decoding("int8", 2), torch.inference_mode():
        cache = gpt.new_cache(2, 20, dtype=INT8)
        step = cpu_step.native_step(gpt, cache, 2)
        with pytest.raises(ValueError, match=r"codes must be in \[0, 32\), got \[3, 32\]"):
            step(torch.tensor([3, 32]), 5)
        with pytest.raises(ValueError, match="takes 2 codes, got shape .3,."):
            step(torch.tensor([1, 2, 3]), 5)
        with pytest.raises(ValueError, match="position 20 outside a cache of 20"):
            step(torch.tensor([1, 2]), 20)
        with pytest.raises(ValueError, match="a cache of 2 rows and 2 layers for 3 rows of a 2-layer GPT"):
            cpu_step.native_step(gpt, cache, 3)


def test_native_step_applies_only_where_it_computes_the_model(monkeypatch):
    fake(monkeypatch, AMD)
    with torch.inference_mode():
        gpt = model()
        assert not cpu_step.applies(gpt, gpt.new_cache(2, 20, dtype=torch.float32))  # a float cache
        assert not cpu_step.applies(gpt, gpt.new_cache(2, 20, dtype=torch.bfloat16))
        assert cpu_step.applies(gpt, gpt.new_cache(2, 20, dtype=INT8))
        other = model(n_unmasked=4)  # a bidirectional prefix: positions need masks the step does not take
        assert not cpu_step.applies(other, other.new_cache(2, 20, dtype=INT8))
        gpt.train()
        assert not cpu_step.applies(gpt, gpt.new_cache(2, 20, dtype=INT8))


def test_native_step_is_built_for_every_cpu_class():
    """AVX512-VNNI, AVX2 or portable C: every class has the step (tests/test_cpu_classes.py: the same numbers)."""
    lib = cpu_attention.library()
    assert lib is not None and lib.taming_step_available() == 1  # this project's machines have gcc


def test_native_step_is_none_without_kernels(monkeypatch):
    gpt = model()
    with torch.inference_mode():
        cache = gpt.new_cache(2, 20, dtype=INT8)
        monkeypatch.setattr(cpu_step, "library", lambda: None)  # no C compiler
        assert cpu_step.native_step(gpt, cache, 2) is None
        assert _decoder(gpt, cache, 2) is not None  # the PyTorch step instead


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


def test_sequence_nll_of_the_native_step_is_close_to_float32(monkeypatch):
    fake(monkeypatch, AMD)
    gpt = model()
    cond = torch.randint(0, 32, (4, 12), generator=torch.Generator().manual_seed(6))
    codes = torch.randint(0, 32, (4, 20), generator=torch.Generator().manual_seed(7))
    exact = sequence_nll(gpt, cond, codes)
    native = sequence_nll(gpt, cond, codes, precision="auto")
    assert 0 < (native - exact).abs().mean() < 0.01 * exact.mean()  # reduced, and close


def test_concatenated_linears_compute_the_parts_side_by_side():
    from taming.transformer.decoding import concatenated

    torch.manual_seed(0)
    parts = [torch.nn.Linear(6, 4), torch.nn.Linear(6, 3, bias=False), torch.nn.Linear(6, 2)]
    x = torch.randn(5, 6)
    with torch.no_grad():
        torch.testing.assert_close(concatenated(parts)(x), torch.cat([p(x) for p in parts], dim=-1))
        assert concatenated(parts[1:2]).bias is None
