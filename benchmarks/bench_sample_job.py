"""`taming sample` as a job: images/s and peak memory (RSS) for growing -n, on a small unconditional model.

The model (random weights: speed and memory do not depend on their values): a VQGAN first stage
for 32x32 images (f=4, 8x8 = 64 codes, ch 64, codebook 512) and a GPT of 4 layers, width 256,
4 heads (3.4M parameters). The run folder is written to --workdir, then for each -n the command

    taming sample -r RUN -n N --batch-size 25 --top-k 100 --precision fp32 -o OUT

runs in a fresh process; its settings.json holds images/s (images made / seconds) and the
process's peak RSS (getrusage ru_maxrss). A job that kept images in memory would grow with -n;
this one should not.

    python benchmarks/bench_sample_job.py [--n 100,1000] [--threads 1] [--workdir /tmp/bench_sample]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIRST_STAGE = {"target": "taming.models.vqgan.VQModel", "params": {
    "embed_dim": 64, "n_embed": 512, "lossconfig": {"target": "taming.modules.losses.DummyLoss"},
    "ddconfig": {"double_z": False, "z_channels": 64, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 64,
                 "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}}}
MODEL = {"base_learning_rate": 4.5e-6, "target": "taming.models.cond_transformer.Net2NetTransformer", "params": {
    "unconditional": True, "cond_stage_config": "__is_unconditional__", "first_stage_config": FIRST_STAGE,
    "transformer_config": {"target": "taming.modules.transformer.mingpt.GPT", "params": {
        "vocab_size": 512, "block_size": 64, "n_layer": 4, "n_head": 4, "n_embd": 256}}}}


def make_run(workdir: Path) -> Path:
    import torch

    from taming.checkpoint import save_state_dict
    from taming.config import instantiate_from_config

    run = workdir / "logs" / "2026-01-01T00-00-00_bench_uncond"
    if (run / "checkpoints" / "last.ckpt").is_file():
        return run
    (run / "configs").mkdir(parents=True, exist_ok=True)
    (run / "configs" / "2026-01-01T00-00-00-project.yaml").write_text(yaml.safe_dump({"model": MODEL}))
    torch.manual_seed(0)
    save_state_dict(run / "checkpoints" / "last.ckpt", instantiate_from_config(MODEL))
    return run


def sample_job(run: Path, out: Path, n: int, threads: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "taming.cli.main", "sample", "-r", str(run), "-n", str(n), "--batch-size", "25",
               "--top-k", "100", "--precision", "fp32", "--device", "cpu", "-o", str(out)]
    subprocess.run(command, check=True, env=env, stderr=subprocess.DEVNULL)
    return json.loads((out / "settings.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="100,1000", help="comma-separated -n values")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", default="/tmp/bench_sample")
    args = p.parse_args()
    workdir = Path(args.workdir)
    run = make_run(workdir)
    print("| -n | seconds | images/s | peak RSS (MiB) |\n|---|---|---|---|")
    for n in (int(v) for v in args.n.split(",")):
        s = sample_job(run, workdir / f"samples_{n}", n, args.threads)
        print(f"| {n} | {s['seconds']:.1f} | {s['images_per_s']:.2f} | {s['peak_rss_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
