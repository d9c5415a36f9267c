"""Samplers: fixture parity (greedy, cached, sliding window), sampling options, CFG, window modes."""
import pytest
import torch

from taming.sampling import generate, sample_logits, sample_window, window_nll, window_origin
from taming.transformer.gpt import GPT
from helpers import expected, fixture_gpt

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models


@pytest.fixture(scope="module")
def seg():
    return fixture_gpt("transformer_seg"), expected("transformer_seg")


def tiny(block_size=48, seed=0) -> GPT:
    torch.manual_seed(seed)
    gpt = GPT(vocab_size=11, block_size=block_size, n_layer=2, n_head=2, n_embd=16).eval()
    with torch.no_grad():  # random weights large enough that the logits are far from uniform
        for p in gpt.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return gpt


@torch.no_grad()
def recompute(gpt, cond, steps, guide=None):
    """The original sampler: the whole sequence through the model for every code, argmax."""
    seq = cond
    for _ in range(steps):
        logits = gpt(seq)[0][:, -1]
        if guide is not None:
            scale, uncond_seq = guide
            u = gpt(uncond_seq)[0][:, -1]
            logits = u + scale * (logits - u)
        token = logits.argmax(-1, keepdim=True)
        seq = torch.cat([seq, token], dim=1)
        if guide is not None:
            guide = (guide[0], torch.cat([guide[1], token], dim=1))
    return seq[:, cond.shape[1]:]


@torch.no_grad()
def window_recompute(gpt, cond_grid, codes, window, stride=1, prefix=None):
    """The original sliding-window loop (full crop through the model per code), argmax."""
    codes = codes.clone()
    B, H, W = codes.shape
    h, w = window
    for i in range(H):
        for j in range(W):
            t, l = window_origin(i, H, h, stride), window_origin(j, W, w, stride)
            parts = [] if prefix is None else [prefix]
            if cond_grid is not None:
                parts.append(cond_grid[:, t:t + h, l:l + w].reshape(B, -1))
            head = sum(p.shape[1] for p in parts)
            parts.append(codes[:, t:t + h, l:l + w].reshape(B, -1))
            logits = gpt(torch.cat(parts, dim=1)[:, :-1])[0][:, head - 1:]  # (B, h*w, V)
            codes[:, i, j] = logits[:, (i - t) * w + (j - l)].argmax(-1)
    return codes


# ---- fixtures ----------------------------------------------------------------------------------
def test_seg_greedy_equals_fixture(seg):
    gpt, e = seg
    out = generate(gpt, e["c_indices"], 64, greedy=True)
    assert torch.equal(out, e["greedy"]) and torch.equal(out, e["greedy_past"])


def test_uncond_greedy_equals_fixture():
    gpt, e = fixture_gpt("transformer_uncond"), expected("transformer_uncond")
    assert torch.equal(generate(gpt, e["sos"], 64, greedy=True), e["greedy"])


def test_window_greedy_equals_fixture(seg):
    gpt, e = seg
    assert e["window_cidx"].shape == (1, 20, 24)
    grid = sample_window(gpt, e["window_cidx"], window=(16, 16), greedy=True)
    assert torch.equal(grid, e["window_greedy"])


def test_window_origin_is_the_original_rule():
    for H in (16, 20, 32):
        for i in range(H):
            local = i if i <= 8 else (16 - (H - i) if H - i < 8 else 8)
            assert window_origin(i, H, 16) == i - local


# ---- sample_logits -----------------------------------------------------------------------------
def frequencies(logits, n=40000, **kw):
    codes = sample_logits(logits.expand(n, -1), generator=torch.Generator().manual_seed(1), **kw)
    return torch.bincount(codes, minlength=logits.shape[-1]).float() / n


def test_temperature_top_k_top_p_distributions():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    torch.testing.assert_close(frequencies(logits), probs[0], atol=0.01, rtol=0)
    sharp = (probs[0] ** 2) / (probs[0] ** 2).sum()  # temperature 0.5 squares the probabilities
    torch.testing.assert_close(frequencies(logits, temperature=0.5), sharp, atol=0.01, rtol=0)
    flat = probs[0].sqrt() / probs[0].sqrt().sum()
    torch.testing.assert_close(frequencies(logits, temperature=2.0), flat, atol=0.01, rtol=0)
    top2 = torch.tensor([0.625, 0.375, 0, 0])
    torch.testing.assert_close(frequencies(logits, top_k=2), top2, atol=0.01, rtol=0)
    # nucleus 0.7: 0.5 alone is below it, 0.5 + 0.3 reaches it -> the two most likely codes
    torch.testing.assert_close(frequencies(logits, top_p=0.7), top2, atol=0.01, rtol=0)
    torch.testing.assert_close(frequencies(logits, top_p=0.4), torch.tensor([1.0, 0, 0, 0]))


def test_sample_logits_rejects_bad_values():
    with pytest.raises(ValueError, match="greedy=True"):
        sample_logits(torch.zeros(1, 3), temperature=0)
    with pytest.raises(ValueError, match="top_k"):
        sample_logits(torch.zeros(1, 3), top_k=0)


# ---- generate ----------------------------------------------------------------------------------
def test_generate_greedy_equals_full_recompute():
    gpt = tiny()
    cond = torch.randint(0, 11, (3, 7))
    assert torch.equal(generate(gpt, cond, 20, greedy=True), recompute(gpt, cond, 20))


def test_seeded_sampling_is_reproducible():
    gpt = tiny()
    cond = torch.randint(0, 11, (2, 5))
    runs = [generate(gpt, cond, 30, top_k=5, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert runs[0].shape == (2, 30) and runs[0].min() >= 0 and runs[0].max() < 11


def test_top_k_1_and_tiny_top_p_are_greedy():
    gpt = tiny()
    cond = torch.randint(0, 11, (2, 5))
    greedy = generate(gpt, cond, 25, greedy=True)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(generate(gpt, cond, 25, top_k=1, generator=g), greedy)
    assert torch.equal(generate(gpt, cond, 25, top_p=1e-6, temperature=3.0, generator=g), greedy)


def test_batch_rows_are_independent():
    gpt = tiny()
    cond = torch.randint(0, 11, (4, 6))
    batch = generate(gpt, cond, 20, greedy=True)
    for b in range(4):
        assert torch.equal(generate(gpt, cond[b:b + 1], 20, greedy=True), batch[b:b + 1])


def test_callback_sees_each_step():
    gpt = tiny()
    seen = []
    out = generate(gpt, torch.zeros(1, 2, dtype=torch.long), 5, greedy=True,
                   callback=lambda k, codes: seen.append((k, codes.clone())))
    assert [k for k, _ in seen] == list(range(5)) and torch.equal(seen[-1][1], out)


def test_classifier_free_guidance():
    gpt = tiny()
    cond = torch.randint(1, 11, (2, 6))
    null = torch.zeros(1, 6, dtype=torch.long)  # a "null" conditioning of the same length
    kw = dict(greedy=True, uncond_codes=null)
    assert torch.equal(generate(gpt, cond, 15, cfg_scale=1.0, **kw), generate(gpt, cond, 15, greedy=True))
    assert torch.equal(generate(gpt, cond, 15, cfg_scale=0.0, **kw)[0],
                       generate(gpt, null, 15, greedy=True)[0])
    want = recompute(gpt, cond, 15, guide=(3.0, null.expand(2, -1)))
    assert torch.equal(generate(gpt, cond, 15, cfg_scale=3.0, **kw), want)
    with pytest.raises(ValueError, match="uncond_codes"):
        generate(gpt, cond, 3, cfg_scale=2.0)


def test_generate_checks_lengths_and_restores_mode():
    gpt = tiny(block_size=10).train()
    with pytest.raises(ValueError, match="block_size is 10"):
        generate(gpt, torch.zeros(1, 5, dtype=torch.long), 7)
    generate(gpt, torch.zeros(1, 5, dtype=torch.long), 6)
    assert gpt.training and gpt.blocks[0].training


@pytest.mark.parametrize("opts", [dict(precision="bf16"), dict(precision="int8")])
def test_reduced_precisions_stay_close_to_float32(opts):
    gpt = tiny()
    cond = torch.randint(0, 11, (3, 4))
    out = generate(gpt, cond, 12, greedy=True, **opts)
    assert out.shape == (3, 12) and (out == generate(gpt, cond, 12, greedy=True)).float().mean() > 0.7
    grid = sample_window(gpt, cond.view(3, 2, 2).repeat(1, 2, 3), window=(3, 3), greedy=True, **opts)
    assert grid.shape == (3, 4, 6) and grid.max() < 11


# ---- sample_window -----------------------------------------------------------------------------
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_window_equals_full_recompute(stride):
    gpt = tiny(block_size=40)
    cond = torch.randint(0, 11, (2, 7, 9))
    got = sample_window(gpt, cond, window=(4, 5), greedy=True, stride=stride)
    want = window_recompute(gpt, cond, torch.zeros_like(cond), (4, 5), stride)
    assert torch.equal(got, want)


def test_unconditional_window_with_sos_prefix():
    gpt = tiny(block_size=20)
    sos = torch.tensor([[3]])
    start = torch.zeros(1, 6, 8, dtype=torch.long)
    got = sample_window(gpt, None, start, window=(4, 4), greedy=True, prefix=sos, max_cached_windows=1)
    assert torch.equal(got, window_recompute(gpt, None, start, (4, 4), prefix=sos))
    with pytest.raises(ValueError, match="SOS"):
        sample_window(gpt, None, start, window=(4, 4))


def test_window_the_size_of_the_grid_equals_generate():
    gpt = tiny(block_size=40)
    cond = torch.randint(0, 11, (2, 4, 5))
    kw = dict(top_k=6, temperature=1.5)
    grid = sample_window(gpt, cond, window=(4, 5), generator=torch.Generator().manual_seed(3), **kw)
    codes = generate(gpt, cond.reshape(2, -1), 20, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(grid.reshape(2, -1), codes)


def test_window_start_keeps_given_codes():
    gpt = tiny(block_size=40)
    cond = torch.randint(0, 11, (2, 7, 9))
    full = sample_window(gpt, cond, window=(4, 5), greedy=True)
    given = torch.randint(0, 11, full.shape)
    k = 3 * 9 + 5
    given.view(2, -1)[:, :k] = full.view(2, -1)[:, :k]
    again = sample_window(gpt, cond, given, window=(4, 5), greedy=True, start=(3, 5))
    assert torch.equal(again, full)  # codes after start are re-sampled, never read before
    sampled = sample_window(gpt, cond, given, window=(4, 5), start=k, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled.view(2, -1)[:, :k], full.view(2, -1)[:, :k])
    assert not torch.equal(sampled, full)


def test_fast_window_mode(seg):
    """Where the strided windows are the exact ones, the codes are the exact mode's: on row 0 up to
    the middle of the first window (window (0, 0) and the same earlier codes in both modes), and on
    a grid no larger than the window (one window only)."""
    gpt, e = seg
    grid = sample_window(gpt, e["window_cidx"], window=(16, 16), stride=8, greedy=True)
    assert grid.shape == (1, 20, 24) and grid.min() >= 0 and grid.max() < 64
    assert torch.equal(grid[:, 0, :9], e["window_greedy"][:, 0, :9])
    small = e["window_cidx"][:, :16, :16]
    fast = sample_window(gpt, small, window=(16, 16), stride=8, top_k=10, generator=torch.Generator().manual_seed(0))
    exact = sample_window(gpt, small, window=(16, 16), top_k=10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fast, exact)


def test_window_rejects_bad_inputs():
    gpt = tiny(block_size=20)
    with pytest.raises(ValueError, match="block_size is 20"):
        sample_window(gpt, torch.zeros(1, 8, 8, dtype=torch.long), window=(4, 4))
    with pytest.raises(ValueError, match="same shape"):
        sample_window(gpt, torch.zeros(1, 3, 3, dtype=torch.long), torch.zeros(1, 3, 4, dtype=torch.long))


def test_window_nll_scores_under_the_window_context():
    gpt = tiny(block_size=40)
    cond = torch.randint(0, 11, (2, 5, 6))
    codes = torch.randint(0, 11, (2, 5, 6))
    nll = window_nll(gpt, cond, codes, window=(4, 4))
    # by hand for one target: (3, 4) -> window origin (1, 2), local (2, 2), crop index 10
    with torch.no_grad():
        seq = torch.cat([cond[:, 1:5, 2:6].reshape(2, -1), codes[:, 1:5, 2:6].reshape(2, -1)], dim=1)
        logp = gpt(seq[:, :-1])[0][:, 16 - 1 + 10].log_softmax(-1)
    torch.testing.assert_close(nll[:, 3, 4], -logp.gather(-1, codes[:, 3, 4, None])[:, 0])
    assert nll.shape == (2, 5, 6) and (nll > 0).all()


def test_original_module_level_samplers(seg):
    from taming.modules.transformer.mingpt import sample, sample_with_past, top_k_logits

    gpt, e = seg
    c = e["c_indices"]
    assert torch.equal(sample_with_past(c, gpt, 64, sample_logits=False), e["greedy_past"])
    assert torch.equal(sample(gpt, c, 8, sample=False), torch.cat([c, e["greedy"][:, :8]], dim=1))
    kept = torch.isfinite(top_k_logits(torch.tensor([[1.0, 3.0, 2.0, 3.0]]), 2))
    assert kept.tolist() == [[False, True, False, True]]


@pytest.mark.parametrize("native", [True, False])
def test_draw_never_picks_a_code_without_probability(monkeypatch, native):
    from taming.transformer.decode import loop

    if not native:  # the PyTorch ops (GPUs, no compiler)
        monkeypatch.setattr(loop, "_kernels", lambda: None)
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0]]).expand(5000, -1)
    codes = loop._draw(probs, torch.Generator().manual_seed(0))
    assert set(codes.tolist()) == {1, 3}
    # u * total == a cumulative probability: the next code (searchsorted right=True)
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.full(shape, 0.5))
    assert loop._draw(torch.tensor([[0.25, 0.25, 0.5]]), None).item() == 2
    # the rounding edge: u * total == total still lands on the last code with probability
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.ones(*shape))
    assert loop._draw(torch.tensor([[0.3, 0.7, 0.0], [0.0, 0.2, 0.8]]), None).tolist() == [1, 2]
    assert loop._draw(torch.tensor([[0.3, 0.7, 0.0]]), None).item() == 1


def test_native_draw_picks_the_codes_of_the_pytorch_ops(monkeypatch):
    from taming.transformer.decode import loop

    loop._kernels.cache_clear()  # looked up afresh: not a None kept from a test without a compiler
    assert loop._kernels() is not None
    # one large probability then 3000 small ones: float32 partial sums drift from the double ones
    # torch.cumsum rounds, moving ~1% of the codes; rows of no probability and of NaN
    probs = torch.cat([torch.full((1, 1), 0.5), torch.full((1, 3000), 0.5 / 3000)], 1).repeat(5000, 1)
    probs[:20], probs[20:40, -1] = 0, float("nan")
    native = loop._draw(probs, torch.Generator().manual_seed(1))
    monkeypatch.setattr(loop, "_kernels", lambda: None)
    assert torch.equal(native, loop._draw(probs, torch.Generator().manual_seed(1)))
