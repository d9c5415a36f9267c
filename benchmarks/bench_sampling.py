"""Second-stage speed: GPT sampling (cached, full recompute, sliding window) and one training step.

Workload of issue 3: GPT vocab 1024, block 512, 8 layers, 8 heads, width 512 (26.5M parameters,
random weights: speed does not depend on their values); 2 CPU threads.
- cached: 4 images, 256 conditioning codes, 256 sampled codes, top-k 100 (`generate`),
  precision fp32 (exact), bf16 (bf16 key/value cache, packed bf16 weights for decode steps) and
  int8 (dynamically quantized int8 linears for decode steps; the cache and prefill as
  taming.precision.decode_plan decides: bf16 where bf16 is fast, else float32);
- full recompute: the original's conditional sampler (the whole sequence through the model for
  every code). Slow: by default 16 steps are timed and the 256 extrapolated by the attended
  length (the cost of a step grows with it); --full times all 256;
- window: `sample_window` on a 32x48 grid, batch 1, top-k 100, 16x16 window, 256 conditioning
  codes: exact mode (the original's algorithm and codes) and fast mode (stride 8 and 4, fp32/bf16).
  --quick times 96 codes of the middle rows (the most expensive: every code opens a new window)
  and reports 1536x their mean as an upper estimate instead of the full run;
- attention (not in the default cases): the one-code attention call alone, int8 and bf16 caches;
- phases (not in the default cases): where a `generate` call with precision auto goes at batch 4
  and 32: the prefill, the 255 one-code steps, sampling the codes;
- train: one step of the transformer stage on 4x511 codes (256 conditioning + 255 image codes in,
  cross-entropy on the 256 image codes): forward, backward, fused AdamW step; float32 and bf16 autocast.

Prints seconds, codes/s (tokens/s for training), achieved GFLOP/s (torch.utils.flop_counter on
the same call) and the fraction of this CPU's measured matmul peak (2048x2048, fp32 / bf16).
--quality additionally trains a small GPT on synthetic structured grids and reports the
validation NLL under the exact window context and under the fast (strided) context.

    python benchmarks/bench_sampling.py [--threads 2] [--quick] [--full] [--quality]
        [--cases cached,full,window,fast,train,phases,attention]

The original code on this machine kind: cached 4.5 s, full recompute 142 s, sliding window
0.215 s per code (about 330 s for 32x48), train step 2.6 s. Targets: cached <= 1.5 s, exact
window <= 110 s, fast window <= 16.5 s, train step <= 1.3 s.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
import sys

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taming.precision import resolve, summary  # noqa: E402
from taming.sampling import generate, sample_logits, sample_window, sequence_nll, window_nll  # noqa: E402
from taming.transformer.decode import engine, loop  # noqa: E402
from taming.transformer.decode.native import NativeStep, library  # noqa: E402
from taming.transformer.gpt import GPT, num_params  # noqa: E402

ORIGINAL = {"cached": 4.5, "full": 142.0, "window": 330.0, "train": 2.6}
TARGETS = {"cached": 1.5, "window": 110.0, "fast": 16.5, "train": 1.3}
ROWS: list[tuple] = []


def matmul_peak(dtype: torch.dtype) -> float:
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    for _ in range(2):
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    return 2 * 2048 ** 3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def gflop(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def report(case: str, variant: str, seconds: float, units: float, unit: str, gf: float | None,
           peak: float, note: str = "") -> None:
    ROWS.append((case, variant, seconds, units / seconds, unit, gf, peak, note))
    rate = f"{gf / seconds:7.1f} {100 * gf / seconds / peak:5.1f}%" if gf else f"{'-':>7} {'-':>6}"
    target = TARGETS.get(case if case != "window" or variant.startswith("exact") else "fast")
    goal = f"<= {target:g}" if target and case in ("cached", "window", "train") and "full" not in variant else ""
    print(f"{case:8} {variant:26} {seconds:9.2f} {units / seconds:10.1f} {unit:9} {rate}  {goal:9} {note}",
          flush=True)


def header() -> None:
    print(f"{'case':8} {'variant':26} {'seconds':>9} {'rate':>10} {'unit':9} {'GFLOP/s':>7} {'peak':>6}  "
          f"{'target':9} note")


def bench_cached(gpt, peak32):
    cond = torch.randint(0, 1024, (4, 256), generator=torch.Generator().manual_seed(0))
    def run(precision="fp32"):
        return generate(gpt, cond, 256, top_k=100, generator=torch.Generator().manual_seed(1), precision=precision)

    gf = gflop(run)  # the same work in both precisions (the packed bf16 matmuls are not counted)
    for precision in ("fp32", "bf16", "int8"):
        run(precision)
        best = min(_timed(lambda: run(precision)) for _ in range(2))
        report("cached", f"generate {precision}", best, 4 * 256, "codes/s", gf, peak32,
               f"original {ORIGINAL['cached']} s")


def bench_phases(gpt, batches=(4, 32)):
    """Where a `generate` call (precision auto) goes: the prefill, the one-code steps, sampling the
    codes; each phase timed in place (the functions generate calls, wrapped), best of 3 calls."""
    print(f"phases of generate (auto: {resolve('auto', 'cpu').decode.describe()})")
    print(f"{'batch':>5} {'total':>7} {'prefill':>8} {'steps':>7} {'per step':>9} {'sampling':>9}")
    real = {"forward": engine.Decoder.forward, "stepper": engine.Decoder.stepper,
            "sample_logits": loop.sample_logits}
    spent: dict[str, float] = {}

    def timed(name, fn):
        def run(*args, **kw):
            t = time.perf_counter()
            out = fn(*args, **kw)
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
            return out
        return run
    def forward(dec, idx, cache, pos):  # the prefill; one-code steps are timed as steps
        return (timed("prefill", real["forward"]) if idx.shape[1] > 1 else real["forward"])(dec, idx, cache, pos)
    engine.Decoder.forward = forward
    engine.Decoder.stepper = lambda *args: timed("steps", real["stepper"](*args))
    loop.sample_logits = timed("sampling", real["sample_logits"])
    try:
        for batch in batches:
            cond = torch.randint(0, 1024, (batch, 256), generator=torch.Generator().manual_seed(0))
            runs = []
            for _ in range(4):  # the first call packs the weights and builds the kernels
                spent.clear()
                t = time.perf_counter()
                generate(gpt, cond, 256, top_k=100, generator=torch.Generator().manual_seed(1), precision="auto")
                runs.append((time.perf_counter() - t, dict(spent)))
            total, phase = min(runs[1:], key=lambda r: r[0])
            print(f"{batch:5} {total:7.3f} {phase['prefill']:8.3f} {phase['steps']:7.3f} "
                  f"{1e3 * phase['steps'] / 255:7.2f}ms {phase['sampling']:9.3f}")
    finally:
        engine.Decoder.forward, engine.Decoder.stepper = real["forward"], real["stepper"]
        loop.sample_logits = real["sample_logits"]


def bench_attention(batches=(4, 32), positions=(256, 383, 510)):
    """The one-code attention alone (`attend_step`: write the step's key and value, attend over the
    cache), 8 heads x 64, a 511-position cache, int8 and bf16; microseconds per call, best of 3 x 200
    calls. The cache stays in the CPU caches here: inside `generate` the weights push it out."""
    from taming.transformer.decode.attention import attend_step

    print(f"one-code attention (attend_step), native kernel {'built' if library() else 'NOT built'}")
    print(f"{'batch':>5} {'position':>8} {'int8 us':>8} {'bf16 us':>8}")
    g = torch.Generator().manual_seed(0)
    for batch in batches:
        qkv = torch.randn(batch, 1, 3 * 512, generator=g)
        k8, v8 = (torch.randint(-127, 128, (batch, 8, 511, 64), dtype=torch.int8, generator=g) for _ in range(2))
        ks, vs = (torch.rand(batch, 8, 511, 1, generator=g) / 50 for _ in range(2))
        kb, vb = (torch.randn(batch, 8, 511, 64, generator=g).bfloat16() for _ in range(2))
        for pos in positions:
            def per_call(fn):
                fn()
                return min(_timed(lambda: [fn() for _ in range(200)]) for _ in range(3)) / 200 * 1e6
            int8 = per_call(lambda: attend_step(qkv, k8, v8, pos, ks, vs))
            bf16 = per_call(lambda: attend_step(qkv, kb, vb, pos))
            print(f"{batch:5} {pos:8} {int8:8.1f} {bf16:8.1f}")


def bench_full(gpt, peak32, full: bool):
    cond = torch.randint(0, 1024, (4, 256), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    steps = 256 if full else 16

    @torch.inference_mode()
    def run():
        seq = cond
        for _ in range(steps):
            logits = gpt(seq)[0][:, -1]
            seq = torch.cat([seq, sample_logits(logits, top_k=100, generator=gen)[:, None]], dim=1)

    seconds, gf = _timed(run), gflop(run)
    note = "all 256 steps"
    if not full:  # a step's cost grows with the attended length 256 + k: scale by it
        scale = sum(256 + k for k in range(256)) / sum(256 + k for k in range(steps))
        seconds, gf = seconds * scale, gf * scale
        note = f"{steps} steps timed, x{scale:.1f} by length"
    report("full", "recompute fp32 (original)", seconds, 4 * 256, "codes/s", gf, peak32,
           f"{note}; original {ORIGINAL['full']} s")


class _Stop(Exception):
    pass


@contextlib.contextmanager
def _native_steps(enabled: bool):
    """generate with (True) or without (False: PyTorch's int8 step) the native one-code step."""
    real = NativeStep.__dict__["build"]
    if not enabled:
        NativeStep.build = classmethod(lambda cls, *args: None)
    try:
        yield
    finally:
        NativeStep.build = real


def bench_window(gpt, peak32, quick: bool, runs):
    H, W = 32, 48
    cond = torch.randint(0, 1024, (1, H, W), generator=torch.Generator().manual_seed(0))
    for stride, precision in runs:
        kw = dict(top_k=100, generator=torch.Generator().manual_seed(1), stride=stride, precision=precision)
        variant = ("exact" if stride == 1 else f"fast stride {stride}") + f" {precision}"
        if stride == 1 and quick:
            first, n = 12 * W, 96

            def stop(k, codes):
                if k + 1 - first >= n:
                    raise _Stop

            def run():
                try:
                    sample_window(gpt, cond, start=first, callback=stop, **kw)
                except _Stop:
                    pass

            per = _timed(run) / n
            report("window", variant, per * H * W, H * W, "codes/s", None, peak32,
                   f"--quick: {n} middle codes x {H * W} (upper estimate)")
            continue

        def run():
            return sample_window(gpt, cond, **kw)

        seconds = _timed(run)
        gf = None
        if stride > 1:  # counted in fp32: the packed bf16 matmuls are invisible to the counter
            gf = gflop(lambda: sample_window(gpt, cond, **{**kw, "precision": "fp32"}))
        report("window", variant, seconds, H * W, "codes/s", gf, peak32,
               f"32x48, original {ORIGINAL['window']} s" if stride == 1 else "32x48")


def bench_train(gpt, peak32, peak16):
    x = torch.randint(0, 1024, (4, 512), generator=torch.Generator().manual_seed(0))
    gpt.train()
    opt = gpt.configure_optimizer(lr=1e-4)
    for name, dtype, peak in (("fp32", None, peak32), ("bf16 autocast", torch.bfloat16, peak16)):
        def step():
            with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                # the transformer stage's step: [256 conditioning ; 256 image codes][:-1] in, the loss
                # on the image codes (Net2NetTransformer.forward_codes)
                _, loss = gpt(x[:, :-1], targets=x[:, 256:], logits_from=255)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()
        best = min(_timed(step) for _ in range(2))
        report("train", f"step {name}", best, 4 * 511, "tokens/s", gflop(step), peak,
               f"original {ORIGINAL['train']} s")
    gpt.eval()


# ---- quality of the fast window mode -----------------------------------------------------------
def synthetic_grids(n: int, H: int, W: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random fields quantized to `vocab` codes, and a coarse 4-level version as the
    conditioning (like a segmentation): spatial structure that makes context matter."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    field = torch.zeros(n, H, W)
    for _ in range(4):
        f = torch.rand(n, 2, 1, 1, generator=g) * 0.6
        phase = torch.rand(n, 1, 1, generator=g) * 6.3
        field += torch.sin(f[:, 0] * yy + f[:, 1] * xx + phase)
    field += 0.3 * torch.randn(n, H, W, generator=g)
    u = (field - field.amin((1, 2), keepdim=True)) / (field.amax((1, 2), keepdim=True) - field.amin((1, 2), keepdim=True))
    codes = (u * (vocab - 1)).round().long()
    cond = (u * 3.999).floor().long() + vocab  # its own 4 tokens after the image codes
    return cond, codes


def bench_quality(smoke: bool):
    torch.manual_seed(0)
    vocab, win, H, W = 16, 8, 16, 24
    gpt = GPT(vocab + 4, 2 * win * win, n_layer=3, n_head=4, n_embd=64)
    cond, codes = synthetic_grids(2048, win, win, vocab, seed=0)  # training crops are window-sized
    opt = gpt.configure_optimizer(lr=3e-3, weight_decay=0.0)
    seq = torch.cat([cond.reshape(len(cond), -1), codes.reshape(len(codes), -1)], dim=1)
    t = time.perf_counter()
    for step in range(20 if smoke else 300):
        batch = seq[torch.randint(0, len(seq), (32,))]
        logits = gpt(batch[:, :-1])[0][:, win * win - 1:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, win * win:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    gpt.eval()
    print(f"quality: trained a {num_params(gpt) / 1e3:.0f}k-parameter GPT on synthetic {win}x{win} crops "
          f"({time.perf_counter() - t:.0f} s, final train loss {loss.item():.3f})")
    vcond, vcodes = synthetic_grids(8, H, W, vocab, seed=1)
    print(f"{'context':28} {'val NLL (nats/code)':>20}")
    for stride in (1, 2, 4, 8):
        nll = window_nll(gpt, vcond, vcodes, window=(win, win), stride=stride).mean().item()
        print(f"{'exact' if stride == 1 else f'fast stride {stride}':28} {nll:20.4f}")
    for precision in ("bf16", "int8", "auto"):  # the reduced-precision decoding of `generate` and the window
        nll = window_nll(gpt, vcond, vcodes, window=(win, win), precision=precision).mean().item()
        print(f"{'exact, ' + precision + ' decoding':28} {nll:20.4f}  ({resolve(precision, 'cpu').decode.describe()})")
    # generate's own steps (the native one-code step where it applies), teacher-forced on held-out
    # window-sized crops: conditioning map then codes, as the model was trained
    wcond, wcodes = synthetic_grids(256, win, win, vocab, seed=2)
    wcond, wcodes = wcond.reshape(len(wcond), -1), wcodes.reshape(len(wcodes), -1)
    print(f"{'generate steps':28} {'val NLL (nats/code)':>20}")
    for label, precision, native in (("fp32", "fp32", True), ("bf16", "bf16", True),
                                     ("int8, PyTorch step", "int8", False), ("int8, native step", "int8", True)):
        with _native_steps(native):
            nll = sequence_nll(gpt, wcond, wcodes, precision=precision).mean().item()
        print(f"{label:28} {nll:20.4f}  ({resolve(precision, 'cpu').decode.describe()})")
    for stride in (1, 4):
        got = sample_window(gpt, vcond, window=(win, win), stride=stride, generator=torch.Generator().manual_seed(0))
        nll = window_nll(gpt, vcond, got, window=(win, win)).mean().item()
        print(f"{'samples of ' + ('exact' if stride == 1 else f'stride {stride}'):28} {nll:20.4f}  "
              "(NLL of the sampled codes under the exact context)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="estimate the exact window from 96 codes")
    ap.add_argument("--full", action="store_true", help="time all 256 steps of the full-recompute sampler")
    ap.add_argument("--quality", action="store_true", help="validation NLL of exact vs fast window context")
    ap.add_argument("--cases", default="cached,full,window,fast,train")
    ap.add_argument("--smoke", action="store_true", help="a 2-layer width-64 GPT: checks the script runs, "
                    "the numbers mean nothing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = set(args.cases.split(","))
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    width, layers = (64, 2) if args.smoke else (512, 8)
    gpt = GPT(1024, 512, n_layer=layers, n_head=8, n_embd=width).eval()
    print(summary("cpu"))
    print(f"GPT {num_params(gpt) / 1e6:.1f}M parameters, {args.threads} threads, matmul peak "
          f"fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s")
    header()
    if "cached" in cases:
        bench_cached(gpt, peak32)
    if "phases" in cases:
        bench_phases(gpt)
    if "attention" in cases:
        bench_attention()
    if "full" in cases:
        bench_full(gpt, peak32, args.full)
    runs = ([(1, "fp32")] if "window" in cases else []) + (
        [(8, "fp32"), (8, "bf16"), (4, "bf16")] if "fast" in cases else [])
    if runs:
        bench_window(gpt, peak32, args.quick, runs)
    if "train" in cases:
        bench_train(gpt, peak32, peak16)
    if args.quality:
        bench_quality(args.smoke)


if __name__ == "__main__":
    main()
