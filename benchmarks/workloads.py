"""The side-by-side workloads, shared by both sides: imports torch only (and PyYAML in the smoke run), so that the original's
interpreter (benchmarks/original_side.py, its own virtual environment) can use it too.

- encode / decode: the faceshq VQGAN config at 256x256, batch 1;
- vqgan_train: one generator + discriminator step with LPIPS, batch 1 (discriminator active);
- cached: the 26.5M GPT (vocab 1024, block 512, 8 layers, 8 heads, width 512), B images x
  256 conditioning codes + 256 sampled codes, top-k 100;
- gpt_train: one training step of that GPT on 4 x (256 conditioning + 256 image codes).
Weights are random (seeded): speed does not depend on their values.
TAMING_BENCH_SMOKE=1 (gpu_check.sh --dry-run) shrinks every workload (the VQGAN too) to check the scripts run.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

# $TAMING_SHARED: benchmarks/gpu_check.sh points it at the part of ../shared that travels to a GPU machine
SHARED = Path(os.environ.get("TAMING_SHARED") or Path(__file__).resolve().parents[2] / "shared")
VQGAN_CONFIG = SHARED / "compat" / "configs" / "faceshq_vqgan.yaml"
GPT_DIMS = dict(vocab_size=1024, block_size=512, n_layer=8, n_head=8, n_embd=512)
COND, STEPS, TOP_K, TRAIN_BATCH, SIZE = 256, 256, 100, 4, 256
SMOKE = os.environ.get("TAMING_BENCH_SMOKE") == "1"


def smoke_vqgan_config(path: Path) -> Path:
    """The faceshq config shrunk (width 32, one downsampling, attention kept at 16 px): without native
    bf16 (forced SSE4.1) one bf16 training step of the full model took ~7 CPU-seconds even at 32 px."""
    import yaml

    cfg = yaml.safe_load(path.read_text())
    cfg["model"]["params"]["ddconfig"].update(resolution=SIZE, ch=32, ch_mult=[1, 2], num_res_blocks=1)
    out = Path(tempfile.gettempdir()) / f"taming-bench-smoke-vqgan-{os.getuid()}.yaml"
    part = out.with_suffix(f".{os.getpid()}")
    part.write_text(yaml.safe_dump(cfg))
    os.replace(part, out)  # whole, for the other side's process too
    return out


if SMOKE:  # the numbers mean nothing
    GPT_DIMS = dict(vocab_size=1024, block_size=64, n_layer=2, n_head=2, n_embd=64)
    COND, STEPS, SIZE = 16, 16, 32
    VQGAN_CONFIG = smoke_vqgan_config(VQGAN_CONFIG)
CASES = ("encode", "decode", "cached", "throughput", "vqgan_train", "gpt_train")


def image(device: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(1, 3, SIZE, SIZE, generator=g) * 2 - 1).to(device)  # (1, 3, SIZE, SIZE)


def cond_codes(batch: int, device: str) -> torch.Tensor:
    return torch.randint(0, GPT_DIMS["vocab_size"], (batch, COND), generator=torch.Generator().manual_seed(0)).to(device)


def train_codes(device: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, GPT_DIMS["vocab_size"], (TRAIN_BATCH, COND + STEPS), generator=g).to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# TAMING_BENCH_CLOCK=cpu: CPU seconds of this process instead of wall seconds. On a CPU shared with
# other jobs (more runnable threads than cores) wall time measures the queue; CPU time with one
# thread per side still measures the work (memory-bandwidth contention remains).
CLOCK = time.process_time if os.environ.get("TAMING_BENCH_CLOCK") == "cpu" else time.perf_counter


def timed(fn, device: str, repeats: int, warmup: int = 1) -> dict:
    """Seconds of fn(): min (the least disturbed run on a shared machine) and median of `repeats`."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t = CLOCK()
        fn()
        sync(device)
        times.append(CLOCK() - t)
    return {"s": min(times), "median_s": statistics.median(times)}


def emit(result: dict) -> None:
    """The worker's one line of output, read by bench_vs_original.py."""
    print("RESULT " + json.dumps(result), flush=True)
