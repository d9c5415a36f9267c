"""Sampling's per-phase precision plan (taming.hardware.decode_plan) and the paths it selects: bf16
prefill, the bf16 key/value cache with its compiled one-query attention, on real and faked CPUs."""
import pytest
import torch
import torch.nn.functional as F

from taming import hardware
from taming.hardware import DecodePlan, Hardware, decode_plan, detect_cpu
from taming.sampling import generate, prefill
from taming.transformer import cpu_attention
from taming.transformer.gpt import GPT
from test_hardware import FLAGS, cpuinfo

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models

BF16, FP32, INT8 = torch.bfloat16, torch.float32, torch.int8


def fake(monkeypatch, hw: Hardware) -> None:
    monkeypatch.setattr(hardware, "_detect", lambda device_type, index: hw)


AMD = detect_cpu(cpuinfo(FLAGS["avx512_bf16"], vendor="AuthenticAMD"))
INTEL = detect_cpu(cpuinfo(FLAGS["avx512_bf16"]))
AMX = detect_cpu(cpuinfo(FLAGS["amx_bf16"]))


@pytest.mark.parametrize("hw, auto", [
    (AMD, DecodePlan("int8", "bf16", INT8)),  # fast bf16 GEMMs, FBGEMM int8 steps faster still
    (INTEL, DecodePlan("int8", "fp32", FP32)),  # bf16 at half the fp32 rate: nothing in bf16
    (AMX, DecodePlan("bf16", "bf16", BF16)),
    (detect_cpu(cpuinfo(FLAGS["baseline"])), DecodePlan("fp32", "fp32", FP32)),
    (Hardware("cuda", "Fake GPU", "cuda", gpu_bf16=True), DecodePlan("bf16", "bf16", BF16)),
])
def test_plan_per_hardware(monkeypatch, hw, auto):
    fake(monkeypatch, hw)
    for rows in (1, 4, 32, 128):  # the measurements found no batch size where the choice changes
        assert decode_plan("auto", hw.device, rows) == auto
    assert decode_plan("fp32", hw.device) == DecodePlan("fp32", "fp32", FP32)  # exact stays exact


def test_explicit_int8_follows_the_hardware_for_the_other_phases(monkeypatch):
    fake(monkeypatch, AMD)
    assert decode_plan("int8", "cpu") == DecodePlan("int8", "bf16", INT8)
    assert decode_plan("bf16", "cpu") == DecodePlan("bf16", "bf16", BF16)
    fake(monkeypatch, INTEL)
    assert decode_plan("int8", "cpu") == DecodePlan("int8", "fp32", FP32)
    assert decode_plan("bf16", "cpu") == DecodePlan("bf16", "fp32", BF16)


def test_plan_on_this_cpu_and_summary():
    hw = hardware.detect("cpu")
    plan = decode_plan("auto", "cpu", 32)
    assert plan.step == hardware.choose(hw).decode
    assert plan.prefill == ("bf16" if hw.bf16_fast and plan.step != "fp32" else "fp32")
    if hw.isa == "avx512_bf16" and hw.vendor == "AuthenticAMD":  # this project's machine: every phase reduced
        assert plan == DecodePlan("int8", "bf16", INT8)
    assert "sampling: one-code steps" in hardware.summary("cpu")


def model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    gpt = GPT(vocab_size=29, block_size=40, n_layer=2, n_head=2, n_embd=32).eval()
    with torch.no_grad():
        for p in gpt.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return gpt


def test_compiled_one_query_attention_equals_float32_sdpa():
    torch.manual_seed(0)
    q = torch.randn(3, 2, 1, 8)
    k, v = torch.randn(3, 2, 21, 8).to(BF16), torch.randn(3, 2, 21, 8).to(BF16)
    want = F.scaled_dot_product_attention(q, k.float(), v.float())  # the same bf16 values, in float32
    for length in (21, 13):  # one kernel for every length (dynamic shapes), and cache slices
        got = cpu_attention.attend_one_query(q, k[:, :, :length], v[:, :, :length])
        ref = want if length == 21 else F.scaled_dot_product_attention(q, k[:, :, :length].float(),
                                                                      v[:, :, :length].float())
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert not cpu_attention._failed  # it compiled here (the machines of this project have gcc)


def test_compiled_int8_attention_equals_float32_sdpa_of_the_dequantized_cache():
    torch.manual_seed(0)
    q = torch.randn(3, 2, 1, 8)
    k, v = torch.randint(-127, 128, (3, 2, 21, 8), dtype=INT8), torch.randint(-127, 128, (3, 2, 21, 8), dtype=INT8)
    ks, vs = torch.rand(3, 2, 21, 1) / 100, torch.rand(3, 2, 21, 1) / 100
    want = F.scaled_dot_product_attention(q, k.float() * ks, v.float() * vs)
    torch.testing.assert_close(cpu_attention.attend_one_query(q, k, v, ks, vs), want, rtol=1e-5, atol=1e-5)


def test_int8_cache_round_trip():
    from taming.transformer.gpt import KVCache

    cache = KVCache(1, 2, 2, 6, 8, dtype=INT8)
    k, v = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 4, 8) * 5
    cache.write(0, 1, k, v)
    gk, gv = cache.read(0, 5, FP32)
    for got, want in ((gk[:, :, 1:], k), (gv[:, :, 1:], v)):  # within half a step of each vector's scale
        step = want.abs().amax(-1, keepdim=True) / 127
        assert ((got - want).abs() <= step / 2 + 1e-6).all()


def test_attention_falls_back_to_the_eager_formula(monkeypatch):
    def broken(fn):
        raise RuntimeError("no compiler")
    monkeypatch.setattr(cpu_attention, "_compiled", {})
    monkeypatch.setattr(cpu_attention, "_failed", False)
    monkeypatch.setattr(cpu_attention, "_compile", broken)
    q, k, v = torch.randn(2, 2, 1, 8), torch.randn(2, 2, 5, 8).to(BF16), torch.randn(2, 2, 5, 8).to(BF16)
    with pytest.warns(RuntimeWarning, match="running it eagerly"):
        got = cpu_attention.attend_one_query(q, k, v)
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k.float(), v.float()), rtol=1e-5, atol=1e-5)


def logits_per_phase(gpt: GPT, precision: str, cond: torch.Tensor, steps: int) -> torch.Tensor:
    """Logits (B, 1 + steps, V) of the prefill and of `steps` one-code steps feeding cond's own codes."""
    B, L = cond.shape
    with gpt.decoding(precision, B), torch.inference_mode():
        cache = gpt.new_cache(B, L + steps, dtype=decode_plan(precision, "cpu", B).cache)
        out = [prefill(gpt, cond, cache)]
        for k in range(steps):
            out.append(gpt.forward_with_cache(cond[:, k:k + 1], cache, L + k, last_only=True))
    return torch.stack(out, 1)


def rel_err(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """Relative L2 error of logits (B, P, V) per phase P -> (P,)."""
    return (got - want).norm(dim=(0, 2)) / want.norm(dim=(0, 2))


@pytest.mark.parametrize("precision, tol", [("int8", 8e-2), ("bf16", 3e-2)])  # measured: 3e-2, 0.6e-2
def test_bf16_prefill_and_reduced_steps_and_cache_stay_close_to_float32(monkeypatch, precision, tol):
    fake(monkeypatch, AMD)  # the plan of this project's AMD CPU, whatever CPU runs the test
    gpt = model()
    cond = torch.randint(0, 29, (40, 24), generator=torch.Generator().manual_seed(1))  # 960 prefill rows
    want = logits_per_phase(gpt, "fp32", cond, 8)
    got = logits_per_phase(gpt, precision, cond, 8)
    err = rel_err(got, want)  # per phase: prefill, then each step
    assert err[0] < tol / 2 and err.max() < tol, err  # rounding, not a broken path
    assert err[0] > 0  # the prefill did run in bf16 (float32 would be exact)
    with gpt.decoding(precision, 40):
        assert gpt.head._bulk is not None and gpt.head._packed is not None
    # a wrong weight in the bf16 copy is far outside the tolerance
    with gpt.decoding(precision, 40):
        gpt.blocks[0].mlp[0]._bulk = lambda x: torch.zeros(*x.shape[:-1], 128)
        with torch.inference_mode():
            broken = prefill(gpt, cond, gpt.new_cache(40, 24, dtype=BF16))
    assert rel_err(broken[:, None], want[:, :1])[0] > 0.1


def test_sampled_codes_are_determined_by_the_seed(monkeypatch):
    fake(monkeypatch, AMD)
    gpt = model()
    cond = torch.randint(0, 29, (6, 10), generator=torch.Generator().manual_seed(2))

    def run(seed):
        return generate(gpt, cond, 12, top_k=10, generator=torch.Generator().manual_seed(seed), precision="auto")
    first = run(3)
    assert torch.equal(first, run(3))
    assert not torch.equal(first, run(4))
    exact = generate(gpt, cond, 12, greedy=True)
    assert (generate(gpt, cond, 12, greedy=True, precision="auto") == exact).float().mean() > 0.8
