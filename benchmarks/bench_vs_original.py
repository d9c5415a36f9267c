"""Ours against the original Taming Transformers, side by side, in one run on the same machine.

The workloads are in benchmarks/workloads.py (faceshq VQGAN 256 px batch 1 encode / decode / G+D
training step; the 26.5M GPT: cached sampling of 4 x 256 codes, top-k 100, sampling throughput at
the best batch size, training step). Every case runs in a fresh process, ours and the original's
interleaved case by case so that a busy machine slows both alike. Ours runs with precision "auto"
(what the commands default to; taming/hardware.py decides), and in exact fp32 as a second column
with --exact.

The original runs as its own code in its own virtual environment (../shared/oracle/README.md):
`--original-venv DIR` or $TAMING_ORIGINAL_VENV (default ../oracle-venv beside the checkout). Without
it the original's column holds the numbers recorded in RECORDED below, and the table says so.

Also printed: what was detected and chosen, the fp32 / bf16 matmul peak, this machine's streaming
bandwidth, and for cached sampling the time as a multiple of its memory-bound limit (every
one-code step reads every weight and the key/value cache written so far once), and of that limit
plus the prefill at its precision's matmul peak (the prefill of the conditioning is compute-bound).

    python benchmarks/bench_vs_original.py [--cases encode,decode,cached,throughput,vqgan_train,gpt_train]
        [--device cpu|cuda] [--repeats 3] [--train-repeats 2] [--batches 16,32,64] [--original-batches 4,8]
        [--precision auto|fp32|bf16|int8] [--exact] [--original-venv DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from workloads import CASES, COND, GPT_DIMS, SMOKE, STEPS, TOP_K, emit, step_gflop, timed  # noqa: E402

# The original on this project's CPU kind (2 cores, AVX-512 + AVX512-BF16, no AMX), measured
# 2026-11-29 by this script with the original's environment present (see BENCHMARKS.md).
RECORDED = {"encode": 0.61, "decode": 1.05, "cached": 4.5, "vqgan_train": 7.8, "gpt_train": 2.6,
            "throughput": 4 / 4.5}
TARGETS_NO_AMX = {"encode": 1.2, "decode": 1.2, "cached": 2.5, "throughput": 10.0, "vqgan_train": 1.3,
                  "gpt_train": 1.8}
TARGETS_AMX = {"encode": 3.0, "decode": 3.0, "cached": 5.0, "throughput": 20.0, "vqgan_train": 2.0,
               "gpt_train": 2.0}


# ---- our side (runs in a worker process with this checkout on the path) -------------------------
def ours_fn(case: str, device: str, batch: int, precision: str):
    from taming.hardware import choose, detect

    choice = choose(detect(device))
    if case in ("encode", "decode", "vqgan_train"):
        return first_stage_fn(case, device, precision, choice)
    return second_stage_fn(case, device, batch, precision, choice)


def first_stage_fn(case, device, precision, choice):
    from taming.config import load_config
    from workloads import VQGAN_CONFIG, image

    p = load_config(VQGAN_CONFIG).model.params
    x = image(device).contiguous(memory_format=torch.channels_last)
    if case == "vqgan_train":
        bf16 = precision == "bf16" or (precision == "auto" and choice.train == "bf16-mixed")
        from bench_first_stage import train_step_fn  # our G + D step (one autoencoder forward)
        from taming.training.first_stage import channels_last_training

        return train_step_fn(x, bf16, channels_last_training(device))
    from taming.precision import prepare_first_stage
    from taming.tokenizer.vqgan import VQGAN

    model = prepare_first_stage(VQGAN(p.ddconfig, p.n_embed, p.embed_dim).to(device).eval(), precision)
    with torch.no_grad():
        quant = model.encode(x)[0].contiguous(memory_format=torch.channels_last)
    if case == "encode":
        return lambda: torch.no_grad()(model.encode)(x)
    return lambda: torch.no_grad()(model.decode)(quant)


def second_stage_fn(case, device, batch, precision, choice):
    from taming.sampling import generate
    from taming.transformer.gpt import GPT
    from workloads import cond_codes, train_codes

    gpt = GPT(**GPT_DIMS).to(device)
    if case in ("cached", "throughput"):
        gpt.eval()
        cond = cond_codes(batch, device)
        return lambda: generate(gpt, cond, STEPS, top_k=TOP_K, generator=torch.Generator(device).manual_seed(1),
                                precision=precision)
    bf16 = precision == "bf16" or (precision == "auto" and choice.train == "bf16-mixed")
    codes, opt = train_codes(device), gpt.train().configure_optimizer(lr=4.5e-6)

    def run():
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            _, loss = gpt(codes[:, :-1], targets=codes[:, COND:], logits_from=COND - 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    run.gpt = gpt  # for benchmarks/profile_training.py
    return run


def worker(args) -> None:
    from taming.precision import resolve

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fn = ours_fn(args.worker, args.device, args.batch, args.precision)
    res = timed(fn, args.device, args.repeats)
    if args.worker.endswith("_train"):
        res["gflop"] = step_gflop(fn)
    emit({"side": "ours", "case": args.worker, "batch": args.batch, "precision": args.precision,
          "decode": resolve(args.precision, args.device).name,
          "plan": resolve(args.precision, args.device).decode.describe(), **res})


# ---- machine limits ------------------------------------------------------------------------------
def matmul_peak(dtype: torch.dtype, device: str) -> float:
    """GFLOP/s of a 2048x2048 matmul (4096 on a GPU), best of 5. The smoke run (gpu_check.sh --dry-run)
    takes 256: a CPU without native bf16 (AVX2) multiplies bf16 some 50x slower than fp32."""
    n = 4096 if device.startswith("cuda") else 256 if SMOKE else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    return 2 * n ** 3 / timed(lambda: a @ b, device, 5, warmup=2)["s"] / 1e9


def stream_bandwidth(device: str) -> float:
    """GB/s of reading a 256 MB float32 tensor once (8 MB in the smoke run), best of 5: the streaming limit."""
    x = torch.ones((2 if SMOKE else 64) * 2 ** 20, device=device)
    return x.numel() * 4 / timed(lambda: x.sum(), device, 5, warmup=2)["s"] / 1e9


def cached_bytes(batch: int, precision: str, device: str) -> float:
    """Bytes one cached sampling of `batch` images must read: every one-code step streams every
    Linear weight (at the decoding precision) and the key/value cache up to its position."""
    C, L = GPT_DIMS["n_embd"], GPT_DIMS["n_layer"]
    linear = L * 12 * C * C + C * GPT_DIMS["vocab_size"]
    from taming.precision import resolve
    from taming.transformer.decode.weights import FEW_ROWS

    plan = resolve(precision, device).decode
    reduced = batch <= FEW_ROWS.get(plan.step, 0)  # the int8 / bf16 copies serve few-row inputs
    w_bytes = {"fp32": 4, "bf16": 2, "int8": 1}[plan.step] if reduced else 4
    kv_bytes = plan.cache.itemsize + (4 / (C // GPT_DIMS["n_head"]) if plan.cache == torch.int8 else 0)  # + scales
    per_position = 2 * L * C * kv_bytes * batch  # keys and values of one position, all layers
    cache = sum(per_position * (COND + k) for k in range(STEPS - 1))
    return (STEPS - 1) * linear * w_bytes + cache


def prefill_gflop(batch: int) -> float:
    """Matmul FLOPs of the prefill of `batch` rows of conditioning (compute-bound, unlike the steps)."""
    from torch.utils.flop_counter import FlopCounterMode

    from taming.transformer.decode import decoder
    from taming.transformer.gpt import GPT
    from workloads import cond_codes

    dec = decoder(GPT(**GPT_DIMS), "fp32", batch)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        dec.forward(cond_codes(batch, "cpu"), dec.new_cache(COND), 0)
    return counter.get_total_flops() / 1e9


def gflop_per_image() -> float:
    """Matmul FLOPs of sampling one image (prefill of the conditioning + 255 one-code steps +
    attention), counted on the CPU with torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    from taming.sampling import generate
    from taming.transformer.gpt import GPT
    from workloads import cond_codes

    gpt = GPT(**GPT_DIMS).eval()
    with FlopCounterMode(display=False) as counter:
        generate(gpt, cond_codes(1, "cpu"), STEPS, top_k=TOP_K, precision="fp32")
    return counter.get_total_flops() / 1e9


# ---- orchestration ------------------------------------------------------------------------------
def original_python(venv: str | None) -> Path | None:
    venv = venv or os.environ.get("TAMING_ORIGINAL_VENV") or str(ROOT.parent / "oracle-venv")
    python = Path(venv) / "bin" / "python"
    return python if python.exists() else None


def run_worker(cmd: list[str], env: dict, cwd: str) -> dict | None:
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    if res.returncode != 0 or not lines:
        print(f"  failed: {' '.join(cmd[1:4])}\n{res.stderr[-2000:]}", file=sys.stderr)
        return None
    out = json.loads(lines[-1][len("RESULT "):])
    print(f"  {out['side']:8} {out['case']:12} batch {out['batch']:3} {out.get('precision', ''):5} "
          f"{out['s']:8.3f} s (median {out['median_s']:.3f})", flush=True)  # as it comes: long runs
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="16,32,64", help="our batch sizes for the throughput case")
    ap.add_argument("--original-batches", default="4,8", help="the original's batch sizes for throughput")
    ap.add_argument("--original-venv", default=None)
    ap.add_argument("--train-repeats", type=int, default=2, help="timed steps of each training case")
    ap.add_argument("--exact", action="store_true", help="also time ours in exact fp32")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: CPU seconds per worker (a shared machine; use with --threads 1)")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "int8"),
                    help="ours' precision (default auto, as the commands); fp32 = the exact path")
    ap.add_argument("--batch", type=int, default=4, help=argparse.SUPPRESS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    from taming.hardware import choose, detect
    from taming.precision import summary

    torch.set_num_threads(args.threads)
    if args.clock == "cpu":  # the peaks on the same clock as the workers
        import workloads
        workloads.CLOCK = time.process_time
    hw = detect(args.device)
    print(summary(args.device))
    # the bf16 peak only where bf16 is fast (the only place the table uses it): without native bf16
    # (AVX2) a 2048 bf16 matmul takes minutes
    peak32 = matmul_peak(torch.float32, args.device)
    peak16 = matmul_peak(torch.bfloat16, args.device) if hw.bf16_fast else float("nan")
    bandwidth = stream_bandwidth(args.device)
    print(f"{args.threads} threads; matmul peak fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s; "
          f"streaming read {bandwidth:.1f} GB/s")
    orig_py = original_python(args.original_venv)
    print("original: " + (f"run now from {orig_py}" if orig_py else "NO environment found: " + (
        "its column holds RECORDED numbers, not measured in this run" if args.device == "cpu" else
        "NOT RUN, its column is empty (numbers are recorded for the CPU only)")))
    # a PYTHONPATH given (gpu_check.sh's carried packages) reaches both sides; this checkout only ours
    given = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != ROOT]
    env_ours = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *given]), "OMP_NUM_THREADS": str(args.threads),
                "TAMING_BENCH_CLOCK": args.clock}
    print(f"clock: {'CPU seconds of each worker process' if args.clock == 'cpu' else 'wall seconds'}")
    env_orig = {k: v for k, v in env_ours.items() if k != "PYTHONPATH"} | (
        {"PYTHONPATH": os.pathsep.join(given)} if given else {})
    scratch = tempfile.mkdtemp(prefix="taming-orig-")  # a folder with no `taming` package in it
    precisions = [args.precision] + (["fp32"] if args.exact and args.precision != "fp32" else [])
    rows = []
    for case in args.cases.split(","):
        ours_batches = [int(b) for b in args.batches.split(",")] if case == "throughput" else [4]
        orig_batches = [int(b) for b in args.original_batches.split(",")] if case == "throughput" else [4]
        repeats = 1 if case == "throughput" else args.train_repeats if case.endswith("_train") else args.repeats
        common = ["--device", args.device, "--threads", str(args.threads), "--repeats", str(repeats)]
        orig = [r for r in ORIG_RUNS if case == "throughput" and r["case"] == "cached"
                and r["batch"] in orig_batches]  # the cached run is the original at batch 4
        orig_batches = [b for b in orig_batches if b not in [r["batch"] for r in orig]]
        for i in range(max(len(ours_batches), len(orig_batches))):  # interleaved: original, ours, ...
            if orig_py and i < len(orig_batches):
                r = run_worker([str(orig_py), str(BENCH / "original_side.py"), case, "--batch",
                                str(orig_batches[i]), *common], env_orig, scratch)
                orig += [r] if r else []
                ORIG_RUNS.extend([r] if r else [])
            for precision in precisions if i < len(ours_batches) else []:
                r = run_worker([sys.executable, __file__, "--worker", case, "--batch", str(ours_batches[i]),
                                "--precision", precision, *common], env_ours, str(ROOT))
                if r:
                    rows.append(r)
        recorded = RECORDED[case] if args.device == "cpu" else float("nan")  # recorded on the CPU only
        if case == "throughput":
            rates = [(r["batch"] / r["s"], r["batch"]) for r in orig]
            best = max(rates) if rates else (recorded, 4)
            ORIG_RESULT[case] = (best[0], bool(rates), best[1])
        else:
            ORIG_RESULT[case] = (orig[0]["s"], True, 4) if orig else (recorded, False, 4)
            if orig and "gflop" in orig[0]:
                ORIG_GFLOP[case] = orig[0]["gflop"]
    print_table(rows, hw, peak32, peak16, bandwidth)


ORIG_RUNS: list[dict] = []
ORIG_RESULT: dict[str, tuple[float, bool, int]] = {}  # case -> (seconds or images/s, measured now?, batch)
ORIG_GFLOP: dict[str, float] = {}  # training case -> the original's GFLOP per step


def print_table(rows, hw, peak32, peak16, bandwidth) -> None:
    from taming.hardware import choose

    targets = TARGETS_AMX if hw.isa == "amx_bf16" else TARGETS_NO_AMX
    flop_img = gflop_per_image() if any(r["case"] == "throughput" for r in rows) else 0.0
    print(f"\n{'case':12} {'ours':>24} {'original':>22} {'ratio':>7} {'target':>7}  note")
    best_tp: dict[str, dict] = {}
    for r in rows:
        if r["case"] == "throughput":
            key = r["precision"]
            if key not in best_tp or r["batch"] / r["s"] > best_tp[key]["batch"] / best_tp[key]["s"]:
                best_tp[key] = r
            continue
        orig, measured, _ = ORIG_RESULT.get(r["case"], (float("nan"), False, 4))
        note = f"{r['precision']}" + (f" -> {r['plan']}" if r["case"] == "cached" else "")
        if r["case"] == "cached":
            from taming.precision import resolve

            limit = cached_bytes(4, r["decode"], hw.device) / (bandwidth * 1e9)
            note += f"; {r['s'] / limit:.1f}x the memory-bound limit ({limit:.2f} s at {bandwidth:.0f} GB/s)"
            # the prefill is compute-bound: at best the matmul peak of its precision
            bf16 = resolve(r["precision"], hw.device).decode.prefill == "bf16"
            floor = limit + prefill_gflop(4) / (peak16 if bf16 else peak32)
            note += f"; {r['s'] / floor:.1f}x it plus the prefill at the {'bf16' if bf16 else 'fp32'} peak ({floor:.2f} s)"
        if "gflop" in r:  # training: the work done and how near the matmul peak it ran
            bf16 = r["precision"] == "bf16" or (r["precision"] == "auto" and choose(hw).train == "bf16-mixed")
            peak = peak16 if bf16 else peak32
            note += (f"; {r['gflop']:.0f} GFLOP at {100 * r['gflop'] / r['s'] / peak:.0f}% of the "
                     f"{'bf16' if bf16 else 'fp32'} peak (all at the peak: {r['gflop'] / peak:.2f} s)")
            if r["case"] in ORIG_GFLOP:
                note += (f"; original {ORIG_GFLOP[r['case']]:.0f} GFLOP at "
                         f"{100 * ORIG_GFLOP[r['case']] / orig / peak32:.0f}% of the fp32 peak")
        tag = "" if measured else " (recorded)" if orig == orig else " (not run)"  # nan: none recorded
        print(f"{r['case']:12} {r['s']:>9.3f} s (med {r['median_s']:6.3f}) {orig:>9.3f} s{tag:>11} "
              f"{orig / r['s']:>6.2f}x {targets[r['case']]:>6.1f}x  {note}")
    for precision, r in best_tp.items():
        orig, measured, obatch = ORIG_RESULT.get("throughput", (float("nan"), False, 4))
        rate = r["batch"] / r["s"]
        ref_peak = peak16 if r["decode"] == "bf16" and hw.bf16_fast else peak32
        frac = 100 * rate * flop_img / ref_peak
        tag = "" if measured else " (recorded)" if orig == orig else " (not run)"  # nan: none recorded
        print(f"{'throughput':12} {rate:>8.2f} img/s (batch {r['batch']:3}) {orig:>6.2f} img/s{tag:>11} "
              f"{rate / orig:>6.2f}x {targets['throughput']:>6.1f}x  {precision} -> {r['plan']}; "
              f"{frac:.0f}% of the {'bf16' if ref_peak == peak16 else 'fp32'} matmul peak "
              f"({flop_img:.1f} GFLOP/image); original's best at batch {obatch}")
    precisions = sorted({r["precision"] for r in rows})
    print(f"\nratio = original / ours (time) or ours / original (images/s); targets: the "
          f"{'AMX' if hw.isa == 'amx_bf16' else 'no-AMX'} row of issue 12; ours = precision "
          f"{', '.join(precisions)}; 'auto' -> {choose(hw).describe()}; kernels: torch "
          f"{torch.backends.cpu.get_cpu_capability()}, ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '-')}")


if __name__ == "__main__":
    main()
