"""The decoding engine (taming/transformer/decode/engine.py, weights.py, graph.py): it computes the GPT's
function, never changes the model, gives each concurrent caller exactly what it gets alone at every
precision pair, keeps reduced copies only while their weights are unchanged, and its reduced paths
stay close to float32 on every CPU class (asserting what the class at hand provides)."""
import gc
import itertools
import threading

import pytest
import torch

from taming.precision import DecodePlan, resolve
from taming.sampling import generate, sample_window, sequence_nll
from taming.transformer.decode import Decoder, weights
from taming.transformer.decode.weights import _PackedBF16, dynamic_int8, packed_bf16
from taming.transformer.gpt import GPT

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models

BF16, FP32, INT8 = torch.bfloat16, torch.float32, torch.int8
PRECISIONS = ("fp32", "bf16", "int8")
PROBE = torch.nn.Linear(8, 8)
BF16_COPIES = packed_bf16(PROBE, 1) is not None  # oneDNN's bf16 GEMMs: AVX512-BF16 / AMX CPUs, not AVX2
INT8_COPIES = dynamic_int8(PROBE) is not None  # FBGEMM's int8 linears: AVX2 and up
AMD_INT8 = DecodePlan("int8", "bf16", INT8, "native")  # the plan of an AMD AVX512-BF16 CPU


def model(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    dims = dict(vocab_size=29, block_size=40, n_layer=2, n_head=2, n_embd=32) | kw
    gpt = GPT(**dims).eval()
    with torch.no_grad():
        for p in gpt.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return gpt


def logits_per_phase(gpt: GPT, plan: DecodePlan, cond: torch.Tensor, steps: int) -> torch.Tensor:
    """Logits (B, 1 + steps, V) of the prefill and of `steps` one-code steps feeding cond's own codes,
    through the engine's forward."""
    B, L = cond.shape
    dec = Decoder(gpt, plan, B)
    with dec.running():
        cache = dec.new_cache(L + steps)
        out = [dec.forward(cond, cache, 0)]
        out += [dec.forward(cond[:, k:k + 1], cache, L + k) for k in range(steps)]
    return torch.stack(out, 1)


def rel_err(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """Relative L2 error of logits (B, P, V) per phase P -> (P,)."""
    return (got - want).norm(dim=(0, 2)) / want.norm(dim=(0, 2))


@pytest.mark.parametrize("rows", [1, 3, 70])  # 3: column-major weight copies; 1 and 70: the model's own
@pytest.mark.parametrize("n_unmasked", [0, 5])
def test_float32_engine_computes_the_models_forward(rows, n_unmasked):
    gpt = model(n_unmasked=n_unmasked, block_size=24)
    idx = torch.randint(0, 29, (rows, 12), generator=torch.Generator().manual_seed(rows))
    got = logits_per_phase(gpt, resolve("fp32").decode, idx[:, :8], 4)
    with torch.no_grad():
        full, _ = gpt(torch.cat([idx[:, :8], idx[:, :4]], dim=1))  # the steps feed cond's own codes
    want = full[:, 7:12]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if rows == 70:  # the same GEMMs as the model's: the same bits
        cache = gpt.new_cache(rows, 12)
        with torch.inference_mode():
            steps = [gpt(idx[:, :8], cache=cache)[0][:, -1]]
            steps += [gpt(idx[:, k:k + 1], cache=cache, pos=8 + k)[0][:, -1] for k in range(4)]
        assert torch.equal(got, torch.stack(steps, 1))


def snapshot(gpt: GPT) -> dict:
    """Everything sampling could change: every module's attributes, and each tensor's storage,
    strides, version and values."""
    state = {}
    for name, m in gpt.named_modules():
        state[name] = {k: v for k, v in vars(m).items() if k not in ("_parameters", "_buffers", "_modules")}
        for pname, t in [*m._parameters.items(), *m._buffers.items()]:
            if t is None:  # a Linear without bias
                continue
            state[f"{name}.{pname}"] = (t.data_ptr(), t.stride(), t._version, t.is_inference(), t.detach().clone())
    return state


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k, x in a.items():
        y = b[k]
        if isinstance(x, tuple):
            if x[:4] != y[:4] or not torch.equal(x[4], y[4]):
                return False
        elif x != y:
            return False
    return True


def test_sampling_never_changes_the_model():
    gpt = model()
    gpt.train()  # a model being trained: its mode stays, no dropout runs while sampling
    before = snapshot(gpt)
    cond = torch.randint(0, 29, (3, 6), generator=torch.Generator().manual_seed(0))
    for precision in (*PRECISIONS, "auto"):
        for rows in (cond, cond[:1]):
            generate(gpt, rows, 8, top_k=5, generator=torch.Generator().manual_seed(1), precision=precision)
        sample_window(gpt, cond[:2].view(2, 2, 3).repeat(1, 2, 2), window=(3, 3), greedy=True, precision=precision)
        sequence_nll(gpt, cond, cond, precision=precision)
    assert same(before, snapshot(gpt)) and gpt.training


def test_dropout_never_runs_while_sampling():
    gpt = model(resid_pdrop=0.5, attn_pdrop=0.5, embd_pdrop=0.5).train()
    cond = torch.randint(0, 29, (2, 6))
    assert torch.equal(generate(gpt, cond, 10, greedy=True), generate(gpt.eval(), cond, 10, greedy=True))


def sample_all(gpt: GPT, precision: str, seed: int) -> list[torch.Tensor]:
    """generate, with and without guidance, and a sliding window, seeded: what one user draws."""
    cond = torch.randint(0, 29, (4, 10), generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    return [generate(gpt, cond, 25, top_k=8, generator=g, precision=precision),
            generate(gpt, cond, 20, top_k=8, generator=g, precision=precision, cfg_scale=2.0,
                     uncond_codes=torch.zeros(1, 10, dtype=torch.long)),
            sample_window(gpt, cond[:2].view(2, 2, 5).repeat(1, 3, 2), window=(4, 5), top_k=8, stride=2,
                          generator=g, precision=precision)]


@pytest.mark.parametrize("first, second", [*itertools.combinations(PRECISIONS, 2), ("int8", "int8")])
def test_concurrent_sampling_gives_each_thread_what_it_gets_alone(first, second):
    gpt = model()
    jobs = [(first, 1), (second, 2)]
    alone = [sample_all(gpt, p, seed) for p, seed in jobs]
    got: dict[int, list] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(i: int, precision: str, seed: int) -> None:
        try:
            start.wait()
            got[i] = [sample_all(gpt, precision, seed) for _ in range(3)]  # overlapping calls, several times
        except BaseException as exc:  # noqa: BLE001 - reported below, with the thread's precision
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, p, s)) for i, (p, s) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, (precision, _) in enumerate(jobs):
        for repeat in got[i]:
            for a, b in zip(repeat, alone[i]):
                assert torch.equal(a, b), (precision, "differs from the same call alone")


def test_reduced_copies_are_kept_until_the_weights_change():
    gpt = model()
    cond = torch.randint(0, 29, (2, 4))
    plan = resolve("int8").decode
    first = Decoder(gpt, plan, 2).weights.few[gpt.head]
    assert Decoder(gpt, plan, 2).weights.few[gpt.head] is first  # not quantized again
    with torch.no_grad():  # an optimizer step changes weights in place: the copy must follow
        gpt.head.weight.zero_()
        gpt.head.weight[5] = 1.0
        gpt.ln_f.bias.fill_(1.0)
    assert Decoder(gpt, plan, 2).weights.few[gpt.head] is not first or first is None
    assert torch.equal(generate(gpt, cond, 3, greedy=True, precision="int8"), torch.full((2, 3), 5))
    kept = len(weights._kept)
    del gpt, first
    gc.collect()
    assert len(weights._kept) < kept  # the copies go with the model


@pytest.mark.parametrize("step, prefill, tol", [("int8", "bf16", 8e-2), ("bf16", "bf16", 3e-2),
                                                ("int8", "int8", 1e-1)])  # measured: 3e-2, 0.6e-2, 3.6e-2
def test_reduced_phases_stay_close_to_float32(step, prefill, tol):
    gpt = model()
    cond = torch.randint(0, 29, (40, 24), generator=torch.Generator().manual_seed(1))  # 960 prefill rows
    want = logits_per_phase(gpt, resolve("fp32").decode, cond, 8)
    # an AMD AVX512-BF16 CPU's plans, and the int8 one of CPUs without fast bf16 (AVX2, Intel without AMX)
    plan = DecodePlan(step, prefill, INT8 if step == "int8" else BF16)
    err = rel_err(logits_per_phase(gpt, plan, cond, 8), want)  # per phase: the prefill, then each step
    assert err[0] < tol / 2 and err.max() < tol, err  # rounding, not a broken path
    copies = Decoder(gpt, plan, 40).weights
    # what this CPU class provides: bf16 copies where oneDNN has bf16 GEMMs, int8 ones where FBGEMM runs
    bulk = BF16_COPIES if prefill == "bf16" else INT8_COPIES
    assert (copies.bulk[gpt.head] is not None) == bulk
    assert (copies.few[gpt.head] is not None) == (BF16_COPIES if step == "bf16" else INT8_COPIES)
    if prefill == "int8" and bulk:  # the steps' own int8 copies, not a second one
        assert copies.bulk[gpt.head] is copies.few[gpt.head]
    if not bulk:
        return
    assert err[0] > 0  # the prefill did run reduced (float32 would be exact)
    broken = Decoder(gpt, plan, 40)  # a wrong weight in the prefill's copy is far outside the tolerance
    broken.weights.bulk[gpt.blocks[0].mlp[0]] = lambda x: torch.zeros(*x.shape[:-1], 128)
    with broken.running():
        logits = broken.forward(cond, broken.new_cache(24), 0)
    assert rel_err(logits[:, None], want[:, :1])[0] > 0.1


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_query_key_value_run_as_one_copy(precision):
    gpt = model()
    attn = gpt.blocks[1].attn
    x = torch.randn(5, 1, 32)
    w = Decoder(gpt, resolve(precision).decode, 5).weights
    available = INT8_COPIES if precision == "int8" else BF16_COPIES
    assert (w.few[attn] is not None) == available
    with torch.inference_mode():
        fused = w.qkv(attn, x)
        parts = torch.cat([w.linear(attn.query, x), w.linear(attn.key, x), w.linear(attn.value, x)], dim=-1)
        exact = torch.cat([attn.query(x), attn.key(x), attn.value(x)], dim=-1)
    # int8: the same per-row weight scales and one activation scale, so the same integers
    torch.testing.assert_close(fused, parts, rtol=0, atol=1e-6 if precision == "int8" else 1e-2)
    assert (fused - exact).abs().max() < 0.05 * exact.abs().max()  # a reduced copy of these weights
    assert ((fused - exact).abs().max() > 0) == available


def test_bf16_prefill_fuses_the_gelu_where_it_has_bf16_copies():
    gpt = model()
    block = gpt.blocks[0]
    w = Decoder(gpt, DecodePlan("bf16", "bf16", BF16), 40).weights
    x = torch.randn(40, 24, 32)
    with torch.inference_mode():
        got = w.mlp(block.mlp, x)
        exact = block.mlp(x)
    assert isinstance(w.bulk[block.mlp[0]], _PackedBF16) == BF16_COPIES
    torch.testing.assert_close(got, exact, rtol=3e-2, atol=3e-2)


def test_static_step_equals_the_dynamic_one():
    """The GPU backend (fixed shapes, masked whole-cache attention, a device-tensor position) run
    eagerly on the CPU: the logits of the dynamic cached step, in float32 and bf16."""
    gpt = model(block_size=24)
    cond = torch.randint(0, 29, (3, 5), generator=torch.Generator().manual_seed(2))
    feed = torch.randint(0, 29, (3, 10), generator=torch.Generator().manual_seed(3))
    for plan in (DecodePlan("fp32", "fp32", FP32), DecodePlan("bf16", "fp32", BF16)):
        got = []
        for backend in ("pytorch", "cuda_graph"):
            dec = Decoder(gpt, DecodePlan(plan.step, plan.prefill, plan.cache, backend), 3)
            with dec.running():
                cache = dec.new_cache(15)
                step = dec.stepper(cache)  # before the prefill: the static one clears the cache
                dec.forward(cond, cache, 0)
                got.append(torch.stack([step(feed[:, k], 5 + k) for k in range(10)], 1))
        torch.testing.assert_close(got[1], got[0], rtol=1e-4, atol=1e-4 if plan.cache == FP32 else 2e-2)


def test_sampled_codes_are_determined_by_the_seed():
    gpt = model()
    cond = torch.randint(0, 29, (6, 10), generator=torch.Generator().manual_seed(2))

    def run(seed):
        return generate(gpt, cond, 12, top_k=10, generator=torch.Generator().manual_seed(seed), precision="auto")
    first = run(3)
    assert torch.equal(first, run(3))
    assert not torch.equal(first, run(4))
    exact = generate(gpt, cond, 12, greedy=True)
    assert (generate(gpt, cond, 12, greedy=True, precision="auto") == exact).float().mean() > 0.8
