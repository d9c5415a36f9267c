"""`taming demo`: both stages, end to end, on the built-in procedural landscapes (no files needed).

    1. train a small VQGAN on 32x32 landscapes                       (configs/landscapes_vqgan.yaml)
    2. train the cond stage: a VQ autoencoder of their segmentations (configs/landscapes_segvq.yaml)
    3. tokenize the data once: image and segmentation codes, with flips (`taming tokenize`)
    4. train a segmentation-conditioned GPT on the codes only         (configs/landscapes_transformer.yaml)
    5. sample: new images for held-out segmentation maps, and a 32x128 panorama with the sliding window
    6. write outputs/demo/{logs,codes,samples,summary.json,summary.md} and print a table

Every stage goes through the same code as `taming train` / `taming tokenize`. `--quick` runs about
a fifth of the steps; `--steps` scales all of them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taming.cli.errors import run_reporting_errors
from taming.cli.train import ArgumentParser
from taming.data.landscapes import colorize

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_STEPS = {"vqgan": 600, "segvq": 150, "transformer": 400}
QUICK_STEPS = {"vqgan": 120, "segvq": 30, "transformer": 80}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="taming demo", description="Train both stages on procedural landscapes and sample.")
    p.add_argument("--out", default="outputs/demo", help="output folder")
    p.add_argument("--quick", action="store_true", help="about a fifth of the steps (a minute or two)")
    p.add_argument("--steps", type=float, default=1.0, help="scale every stage's step count")
    p.add_argument("--seed", type=int, default=23)
    p.add_argument("--tokenize-limit", type=int, default=None,
                   help="training images to tokenize (default 2000, 400 with --quick)")
    p.add_argument("--samples", type=int, default=8, help="conditional samples to draw")
    p.add_argument("--top-k", type=int, default=20)
    return p


def upscale(images: torch.Tensor, factor: int = 4) -> torch.Tensor:
    return torch.nn.functional.interpolate(images.float(), scale_factor=factor, mode="nearest")


def train_stage(name: str, base: list[str], steps: int, logdir: Path, seed: int, overrides: list[str]) -> dict:
    from taming.training.trainer import TrainOptions, run

    print(f"\n=== {name}: {steps} steps ({' + '.join(Path(b).name for b in base)}) ===", flush=True)
    t0 = time.perf_counter()
    job = run(TrainOptions(base=base, train=True, name=name, seed=seed, logdir=str(logdir), no_test=True,
                           max_steps=steps, accelerator="cpu",
                           overrides=["lightning.trainer.enable_model_summary=false", *overrides]))
    seconds = time.perf_counter() - t0
    images = steps * int(job.config.data.params.batch_size)
    return {"job": job, "seconds": seconds, "steps": steps, "steps_per_s": steps / seconds,
            "images_per_s": images / seconds, "ckpt": str(job.paths.ckptdir / "last.ckpt"),
            "run": str(job.paths.logdir)}


def val_batches(dataset: Any, n: int, batch: int = 16):
    for start in range(0, n, batch):
        items = [dataset[i] for i in range(start, min(n, start + batch))]
        yield {k: torch.as_tensor(np.stack([it[k] for it in items])) for k in ("image", "segmentation")}


@torch.no_grad()
def draw_samples(model: Any, val: Any, n: int, top_k: int, seed: int) -> tuple[torch.Tensor, dict]:
    """Rows of [segmentation | sample 1 | sample 2 | real] for n held-out maps, and the val NLL."""
    from taming.training.quality import psnr01

    model.eval()
    batch = next(val_batches(val, n, batch=n))
    x, c = model.get_xc(batch)
    quant_z, z = model.encode_to_z(x)
    _, c_codes = model.encode_to_c(c)
    logits, target = model.forward_codes(z, c_codes)
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1)).item()
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(2):
        codes = model.sample(z[:, :0], c_codes, steps=z.shape[1], sample=True, top_k=top_k, generator=g)
        samples.append(model.decode_to_img(codes, quant_z.shape).clamp(-1, 1))
    rows = torch.stack([colorize(c), samples[0], samples[1], x], dim=1)  # (n, 4, 3, H, W)
    return rows.flatten(0, 1), {"val_nll": nll, "val_perplexity": float(np.exp(nll)),
                                "sample_psnr_vs_real": float(psnr01(x, samples[0]).mean())}


@torch.no_grad()
def panorama(model: Any, top_k: int, seed: int, width: int = 128) -> torch.Tensor:
    """A 32 x `width` landscape from a fresh segmentation map, sampled window by window."""
    from taming.data.landscapes import ProceduralLandscapes
    from taming.sampling import sample_window

    scene = ProceduralLandscapes(height=32, width=width, length=1, seed=seed, split="test")[0]
    seg = torch.as_tensor(scene["segmentation"])[None].permute(0, 3, 1, 2)  # (1, 8, 32, W)
    quant_c, c_codes = model.encode_to_c(seg)
    h, w = quant_c.shape[2:]
    codes = sample_window(model.transformer, c_codes.reshape(1, h, w), window=(8, 8), top_k=top_k,
                          generator=torch.Generator().manual_seed(seed))  # (1, h, w)
    image = model.first_stage_model.decode_codes(codes).clamp(-1, 1)
    real = torch.as_tensor(scene["image"])[None].permute(0, 3, 1, 2)
    return torch.cat([colorize(seg), image, real], dim=0)  # 3 rows: map, sample, the generator's own image


def run_demo(args: argparse.Namespace) -> dict:
    from taming.checkpoint import load_model
    from taming.data.code_shards import CodeEncoder, data_config_for, encode_split
    from taming.data.landscapes import LandscapesValidation
    from taming.images import save_grid
    from taming.training.quality import evaluate_reconstruction
    from omegaconf import OmegaConf

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out)
    steps = {k: max(2, int(round(v * args.steps))) for k, v in (QUICK_STEPS if args.quick else DEFAULT_STEPS).items()}
    logdir, t_start = out / "logs", time.perf_counter()
    stats: dict[str, Any] = {}

    vq = train_stage("vqgan", [str(CONFIGS / "landscapes_vqgan.yaml")], steps["vqgan"], logdir, args.seed, [])
    val = LandscapesValidation(size=32, length=32)
    vq["quality"] = evaluate_reconstruction(vq["job"].model, val_batches(val, 32))
    seg = train_stage("segvq", [str(CONFIGS / "landscapes_segvq.yaml")], steps["segvq"], logdir, args.seed, [])
    segm = seg["job"].model.eval()
    with torch.no_grad():
        s = next(val_batches(val, 32, batch=32))["segmentation"].permute(0, 3, 1, 2)
        seg["pixel_accuracy"] = float((segm(s)[0].argmax(1) == s.argmax(1)).float().mean())

    stage_ckpts = [f"model.params.first_stage_config.params.ckpt_path={vq['ckpt']}",
                   f"model.params.cond_stage_config.params.ckpt_path={seg['ckpt']}"]
    tr_config = str(CONFIGS / "landscapes_transformer.yaml")
    print("\n=== tokenize: image and segmentation codes, with flips ===", flush=True)
    t0 = time.perf_counter()
    model, config = load_model(tr_config, None, stage_ckpts)
    tok, codes_dir = CodeEncoder(model), out / "codes"
    codes_dir.mkdir(parents=True, exist_ok=True)
    from taming.config import instantiate_from_config
    dm = instantiate_from_config(config.data, where="data")
    dm.setup("fit")
    results = {}
    limit = args.tokenize_limit or (400 if args.quick else 2000)
    for split, limit, flip in (("train", limit, True), ("validation", None, False)):
        results[split] = encode_split(tok, dm.datasets[split], str(codes_dir / f"{split}-%06d.tar"), batch_size=64,
                                        shard_size=2000, flip=flip, crops=0, crop_size=None, seed=args.seed,
                                        limit=limit)
    OmegaConf.save(OmegaConf.create(data_config_for(codes_dir, results, 32)), codes_dir / "data.yaml")
    tokenize = {"seconds": time.perf_counter() - t0, "samples": results["train"]["samples"],
                "images_per_s": results["train"]["images"] / max(time.perf_counter() - t0, 1e-9)}
    print(f"{results['train']['samples']} training code samples in {tokenize['seconds']:.1f} s", flush=True)

    # its image logger would sample at step 0 (untrained, and slow); the samples come at the end instead
    tr = train_stage("transformer", [tr_config, str(codes_dir / "data.yaml")], steps["transformer"], logdir,
                     args.seed, stage_ckpts + ["lightning.callbacks.image_logger=null"])
    print("\n=== sampling ===", flush=True)
    t0 = time.perf_counter()
    samples_dir = out / "samples"
    rows, tr["quality"] = draw_samples(tr["job"].model, val, args.samples, args.top_k, args.seed)
    save_grid(upscale(rows), samples_dir / "conditional_samples.png", nrow=4)
    pano = panorama(tr["job"].model, args.top_k, args.seed)
    save_grid(upscale(pano), samples_dir / "panorama.png", nrow=1)
    recon_batch = next(val_batches(val, 8, batch=8))
    x = vq["job"].model.get_input(recon_batch, "image")
    with torch.no_grad():
        xrec = vq["job"].model(x)[0].clamp(-1, 1)
    save_grid(upscale(torch.stack([x, xrec], 1).flatten(0, 1)), samples_dir / "vqgan_reconstructions.png", nrow=4)
    sampling_s = time.perf_counter() - t0

    summary = {
        "vqgan": {k: vq[k] for k in ("steps", "seconds", "steps_per_s", "images_per_s", "run", "ckpt")} | vq["quality"],
        "segvq": {k: seg[k] for k in ("steps", "seconds", "steps_per_s", "images_per_s", "run", "ckpt",
                                      "pixel_accuracy")},
        "tokenize": tokenize,
        "transformer": {k: tr[k] for k in ("steps", "seconds", "steps_per_s", "images_per_s", "run", "ckpt")}
        | tr["quality"],
        "sampling_seconds": sampling_s,
        "panorama": f"{pano.shape[-2]}x{pano.shape[-1]}",
        "codebook_size": vq["job"].model.n_embed,
        "vocab_size": tr["job"].model.vocab_size,
        "total_seconds": time.perf_counter() - t_start,
        "images": {n: str(samples_dir / f"{n}.png") for n in ("conditional_samples", "panorama",
                                                               "vqgan_reconstructions")},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    table = summary_table(summary)
    (out / "summary.md").write_text("# taming demo\n\n" + table + "\n\nImages:\n"
                                    + "".join(f"- {p}\n" for p in summary["images"].values()))
    print("\n" + table)
    print(f"\nEverything is under {out}/: samples/*.png, logs/ (run folders), codes/, summary.json, summary.md")
    return summary


def summary_table(s: dict) -> str:
    rows = [("stage", "steps", "time (s)", "steps/s", "images/s", "result"),
            ("VQGAN 32x32 -> 8x8 codes", s["vqgan"]["steps"], s["vqgan"]["seconds"], s["vqgan"]["steps_per_s"],
             s["vqgan"]["images_per_s"], f"val PSNR {s['vqgan']['psnr']:.2f} dB, "
             f"{int(s['vqgan']['codes_in_use'])}/{s['codebook_size']} codes in use"),
            ("segmentation VQ (cond stage)", s["segvq"]["steps"], s["segvq"]["seconds"], s["segvq"]["steps_per_s"],
             s["segvq"]["images_per_s"], f"pixel accuracy {100 * s['segvq']['pixel_accuracy']:.1f}%"),
            ("tokenize (with flips)", "-", s["tokenize"]["seconds"], "-", s["tokenize"]["images_per_s"],
             f"{s['tokenize']['samples']} code samples"),
            ("transformer on codes", s["transformer"]["steps"], s["transformer"]["seconds"],
             s["transformer"]["steps_per_s"], s["transformer"]["images_per_s"],
             f"val NLL {s['transformer']['val_nll']:.3f} nats/code (perplexity "
             f"{s['transformer']['val_perplexity']:.1f} of {s['vocab_size']})"),
            ("sampling", "-", s["sampling_seconds"], "-", "-", f"conditional samples + {s['panorama']} panorama")]

    def fmt(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    lines.append(f"\nTotal: {s['total_seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def go() -> int:
        run_demo(build_parser().parse_args(argv))
        return 0

    return run_reporting_errors("demo", go)
