"""Training speed of both stages on the built-in landscapes, through `taming train` itself.

    python benchmarks/bench_training.py [--steps 30] [--window 10] [--cases vqgan,vqgan_bf16,...]

Each case is a fresh `taming train` process (CPU) timed by the step timer callback: the mean step
time over the windows after the first (which holds start-up and warm-up). Cases:
    vqgan             configs/landscapes_vqgan.yaml, batch 8, fp32, generator + discriminator step
    vqgan_bf16        the same with --precision bf16-mixed
    vqgan_ddp2        2 processes (gloo) x batch 4 = the same global batch 8
    vqgan_fsdp2       the same with --strategy fsdp (FSDP2, parameters sharded over the 2 processes)
    transformer_fly   configs/landscapes_transformer.yaml on images: both frozen stages encode every batch
    transformer_codes the same on pre-tokenized code shards (`taming tokenize`, timed separately)
    transformer_ddp2  pre-tokenized, 2 processes x batch 16
    transformer_fsdp2 the same with --strategy fsdp
Speed-ups are printed against the matching single-process fp32 case. Stage weights are random
(speed does not depend on them).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VQGAN = ROOT / "configs" / "landscapes_vqgan.yaml"
TRANSFORMER = ROOT / "configs" / "landscapes_transformer.yaml"
STEP_LINE = re.compile(r"step (\d+): ([0-9.]+) s/step, ([0-9.]+) images/s")


def train(base: list[Path], steps: int, window: int, workdir: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "taming.cli.main", "train", "-b", *map(str, base), "-t", "--no-test",
           "--accelerator", "cpu", "--max_steps", str(steps), "-l", str(workdir / "logs"),
           f"lightning.callbacks.step_timer.params.every={window}", "lightning.callbacks.image_logger=null",
           "lightning.trainer.limit_val_batches=0", "lightning.trainer.enable_progress_bar=false",
           "lightning.trainer.enable_model_summary=false", *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    windows = [(int(m[1]), float(m[2]), float(m[3])) for m in STEP_LINE.finditer(r.stdout + r.stderr)]
    timed = windows[1:] or windows
    if not timed:
        raise RuntimeError(f"no step timings in the output of {' '.join(cmd)}")
    s_per_step = sum(w[1] for w in timed) / len(timed)
    return {"s_per_step": s_per_step, "images_per_s": sum(w[2] for w in timed) / len(timed), "wall": wall}


def tokenize(workdir: Path, images: int) -> float:
    out = workdir / "codes"
    cmd = [sys.executable, "-m", "taming.cli.main", "tokenize", "--config", str(TRANSFORMER), "--out", str(out),
           "--limit", str(images), "--shard-size", str(max(1, images // 4)), "--splits", "train", "--batch-size", "64"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return images / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="steps per case (3 windows)")
    p.add_argument("--window", type=int, default=10, help="steps per timing window")
    p.add_argument("--cases", default="vqgan,vqgan_bf16,vqgan_ddp2,vqgan_fsdp2,transformer_fly,transformer_codes,"
                                      "transformer_ddp2,transformer_fsdp2")
    p.add_argument("--tokenize-images", type=int, default=1024)
    args = p.parse_args()
    from taming.precision import summary

    print(summary())  # what was detected and what precision="auto" chooses
    cases = args.cases.split(",")
    results: dict[str, dict] = {}
    batch = {"vqgan": 8, "vqgan_bf16": 8, "vqgan_ddp2": 8, "vqgan_fsdp2": 8, "transformer_fly": 32,
             "transformer_codes": 32, "transformer_ddp2": 32, "transformer_fsdp2": 32}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        codes_rate = None
        if any(c in cases for c in ("transformer_codes", "transformer_ddp2", "transformer_fsdp2")):
            codes_rate = tokenize(work, args.tokenize_images)
        for case in cases:
            run_dir = work / case
            run_dir.mkdir()
            if case == "vqgan":
                results[case] = train([VQGAN], args.steps, args.window, run_dir, [])
            elif case == "vqgan_bf16":
                results[case] = train([VQGAN], args.steps, args.window, run_dir, ["--precision", "bf16-mixed"])
            elif case in ("vqgan_ddp2", "vqgan_fsdp2"):
                results[case] = train([VQGAN], args.steps, args.window, run_dir,
                                      ["--strategy", case[6:-1], "--devices", "2", "data.params.batch_size=4"])
            elif case == "transformer_fly":
                results[case] = train([TRANSFORMER], args.steps, args.window, run_dir, ["data.params.num_workers=0"])
            elif case == "transformer_codes":
                results[case] = train([TRANSFORMER, work / "codes" / "data.yaml"], args.steps, args.window, run_dir,
                                      ["data.params.batch_size=32"])
            elif case in ("transformer_ddp2", "transformer_fsdp2"):
                results[case] = train([TRANSFORMER, work / "codes" / "data.yaml"], args.steps, args.window, run_dir,
                                      ["--strategy", case[12:-1], "--devices", "2", "data.params.batch_size=16"])
            else:
                raise SystemExit(f"unknown case {case!r}")
            r = results[case]
            print(f"{case}: {r['s_per_step']:.3f} s/step", flush=True)

    base = {"vqgan_bf16": "vqgan", "vqgan_ddp2": "vqgan", "vqgan_fsdp2": "vqgan", "transformer_codes": "transformer_fly",
            "transformer_ddp2": "transformer_codes", "transformer_fsdp2": "transformer_codes"}
    print(f"\nCPU threads: {os.cpu_count()}, torch default threads; steps timed after a {args.window}-step warm-up")
    print(f"{'case':<18} {'global batch':>12} {'s/step':>8} {'steps/s':>8} {'images/s':>9} {'speed-up':>9}")
    for case, r in results.items():
        ref = results.get(base.get(case, ""), None)
        speedup = f"{ref['s_per_step'] / r['s_per_step']:.2f}x" if ref else "-"
        images = batch[case] / r["s_per_step"]
        print(f"{case:<18} {batch[case]:>12} {r['s_per_step']:>8.3f} {1 / r['s_per_step']:>8.2f} {images:>9.1f} "
              f"{speedup:>9}")
    if codes_rate:
        print(f"tokenize: {codes_rate:.1f} images/s (image + segmentation codes, one pass)")


if __name__ == "__main__":
    main()
