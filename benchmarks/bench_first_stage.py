"""First-stage speed on the original faceshq_vqgan config: 256x256, batch 1, 2 CPU threads.

Measures, each case in a fresh subprocess (so peak RSS is per case):
- encode = quantize(quant_conv(encoder(x))) and decode = decoder(post_quant_conv(quant));
- if the Lightning shell `taming.models.vqgan.VQModel` exists: one GAN training step as its
  training_step does it (autoencoder forward, generator loss with LPIPS and the adaptive weight,
  Adam step, discriminator loss on the detached reconstruction, Adam step), discriminator active
  (global_step past disc_start). LPIPS keeps random weights: speed does not depend on their
  values, so no weight file is needed.
Modes: fp32 = float32 NCHW (the exact path the fixtures check); cl = float32 with channels_last
weights and activations (same numbers up to summation order); bf16 = channels_last with the
convolutions in bf16 (inference: weights stored bf16 via prepare_fast(torch.bfloat16); training:
bf16 autocast over float32 weights); the quantizer's distances are float32 in every mode.

Prints seconds per call (min over repeats: the least disturbed run on a shared machine), GFLOP
per call of the original algorithm (torch.utils.flop_counter; our decoder executes fewer, see
Upsample), achieved GFLOP/s, the fraction of this CPU's measured matmul peak (2048x2048, fp32 for
fp32/cl, bf16 for bf16), and peak RSS.

    python benchmarks/bench_first_stage.py [--threads 2] [--repeats 3] [--cases encode,decode,train]

Targets (issue 2; the original code on this machine kind: encode 0.61 s, decode 1.05 s, train
step 7.8 s, 4.6 GB): encode <= 0.30 s, decode <= 0.52 s, train step <= 5.2 s, peak RSS < 4.6 GB.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
from workloads import VQGAN_CONFIG as CONFIG  # noqa: E402  (the faceshq config in ../shared; this folder is on the path)
TARGETS = {"encode": 0.30, "decode": 0.52, "train": 5.2}
ORIGINAL = {"encode": 0.61, "decode": 1.05, "train": 7.8}


def model_params():
    from taming.config import load_config

    return load_config(CONFIG).model.params


def build_core(mode: str):
    from taming.tokenizer.vqgan import VQGAN

    p = model_params()
    model = VQGAN(p.ddconfig, p.n_embed, p.embed_dim).eval()
    if mode == "cl":
        model.prepare_fast()
    elif mode == "bf16":
        model.prepare_fast(torch.bfloat16)
    return model


def count_gflop(fn) -> float:
    """FLOPs of the original algorithm (explicit upsampling before each decoder upsample conv)."""
    from torch.utils.flop_counter import FlopCounterMode

    from taming.tokenizer.layers import Upsample

    saved, Upsample.phase_min_pixels = Upsample.phase_min_pixels, None
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        Upsample.phase_min_pixels = saved
    return counter.get_total_flops() / 1e9


def case_fn(case: str, mode: str):
    """A zero-argument callable running one call of `case` in `mode` (fp32, cl, bf16)."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    if mode != "fp32":
        x = x.contiguous(memory_format=torch.channels_last)
    if case == "train":
        return train_step_fn(x, mode)
    model = build_core(mode)
    if case == "encode":
        def run():
            with torch.no_grad():
                return model.encode(x)
        return run
    if case == "decode":
        with torch.no_grad():
            quant = model.encode(x)[0]
        if mode != "fp32":
            quant = quant.contiguous(memory_format=torch.channels_last)

        def run():
            with torch.no_grad():
                return model.decode(quant)
        return run
    raise ValueError(case)


def train_step_fn(x: torch.Tensor, mode: str):
    """One generator + discriminator step of taming.models.vqgan.VQModel (hook for the shell)."""
    from taming.models.vqgan import VQModel

    p = model_params()
    model = VQModel(**p).to(x.device)  # the device of x (bench_vs_original.py runs it on GPUs too)
    model.loss.perceptual_loss.weights_loaded = True  # random LPIPS weights: same speed, no files
    model.train()
    if mode != "fp32":
        model.to(memory_format=torch.channels_last)
    fast = mode == "bf16"
    model.learning_rate = 4.5e-6
    (opt_ae, opt_disc), _ = model.configure_optimizers()  # as in training (fused Adam where available)
    step = int(p.lossconfig.params.disc_start) + 1  # discriminator active

    def run():
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=fast):
            xrec, qloss = model(x)
            model.loss.discriminator.requires_grad_(False)
            aeloss, _ = model.loss(qloss, x, xrec, 0, step, last_layer=model.get_last_layer(), split="train")
        aeloss.backward()
        model.loss.discriminator.requires_grad_(True)
        opt_ae.step()
        opt_ae.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=fast):
            discloss, _ = model.loss(qloss, x, xrec.detach(), 1, step, last_layer=model.get_last_layer(),
                                     split="train")
        discloss.backward()
        opt_disc.step()
        opt_disc.zero_grad(set_to_none=True)
    return run


def worker(case: str, mode: str, repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    run = case_fn(case, mode)
    run()  # warm-up: oneDNN primitive creation, allocator
    gflop = count_gflop(run)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is KiB on Linux
    return {"case": case, "mode": mode, "s": min(times), "median_s": statistics.median(times), "gflop": gflop,
            "rss_gb": rss_gb}


def matmul_peak(threads: int) -> dict[str, float]:
    """GFLOP/s of a 2048x2048 matmul, float32 and bf16: the practical peak to compare against."""
    torch.set_num_threads(threads)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        a @ b
        reps, t0 = 5, time.perf_counter()
        for _ in range(reps):
            a @ b
        out[name] = 2 * 2048 ** 3 * reps / (time.perf_counter() - t0) / 1e9
    return out


def has_shell() -> bool:
    try:
        from taming.models.vqgan import VQModel  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="encode,decode,train")
    ap.add_argument("--modes", default="fp32,cl,bf16")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        case, mode = args.worker.split(":")
        print(json.dumps(worker(case, mode, args.repeats, args.threads)))
        return

    cases = [c for c in args.cases.split(",") if c != "train" or has_shell()]
    peak = matmul_peak(args.threads)
    rows = []
    for case in cases:
        for mode in args.modes.split(","):
            cmd = [sys.executable, __file__, "--worker", f"{case}:{mode}", "--threads", str(args.threads),
                   "--repeats", str(args.repeats if case != "train" else max(1, args.repeats - 1))]
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if res.returncode != 0:
                print(f"{case} {mode} failed:\n{res.stderr[-3000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))

    from taming.precision import summary

    print(f"\n{summary('cpu')}")
    print(f"faceshq_vqgan first stage, 256x256, batch 1, {args.threads} threads, torch {torch.__version__}")
    print(f"matmul peak 2048^2: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    head = f"{'case':<8}{'mode':<6}{'s/call':>8}{'median':>8}{'target':>8}{'orig':>7}{'speed-up':>9}{'GFLOP':>8}" \
           f"{'GFLOP/s':>9}{'%peak':>7}{'peak RSS GB':>12}"
    print(head)
    print("-" * len(head))
    for r in rows:
        ref_peak = peak["bf16" if r["mode"] == "bf16" else "fp32"]
        gflops = r["gflop"] / r["s"]
        print(f"{r['case']:<8}{r['mode']:<6}{r['s']:>8.3f}{r['median_s']:>8.3f}{TARGETS[r['case']]:>8.2f}{ORIGINAL[r['case']]:>7.2f}"
              f"{ORIGINAL[r['case']] / r['s']:>8.2f}x{r['gflop']:>8.1f}{gflops:>9.1f}{100 * gflops / ref_peak:>6.0f}%"
              f"{r['rss_gb']:>12.2f}")
    print("modes: fp32 = exact NCHW path; cl = channels_last float32; bf16 = channels_last + bf16 convolutions "
          "(quantizer in fp32). GFLOP = the original algorithm's count.")


if __name__ == "__main__":
    main()
