"""The demo pipeline behind `taming demo` (taming/cli/demo.py parses DemoOptions, calls run_demo):
both stages, end to end, on the built-in procedural landscapes (no files needed).

    1. train a VQGAN on 32x32 windows of 64x64 landscapes          (configs/landscapes_vqgan.yaml)
    2. train the cond stage: a VQ autoencoder of their segmentations (configs/landscapes_segvq.yaml); its
       pixel and mean class accuracy on held-out maps say how much of a map the GPT can see
    3. tokenize whole 64x64 scenes once (16x16 image and map codes, with flips; taming.data.code_shards)
    4. train a segmentation-conditioned GPT on 8x8 windows of those code grids (taming.data.code_crops),
       the windows the sliding-window sampler feeds                 (configs/landscapes_transformer.yaml)
    5. sample 64x64 images for held-out maps and 64x256 panoramas (the grid sampler, sliding window)
    6. measure: reconstruction PSNR/SSIM/codes in use, validation bits per dim against the uniform
       code distribution (taming.eval.likelihood), KD-randconv of samples to held-out images (taming.eval.random_features),
       map agreement of real images, reconstructions, samples and the panoramas: a segmentation network trained
       on real scenes labels them, scored as pixel accuracy and mIoU against their maps (taming.eval.map_agreement)
    7. write outputs/demo/{index.html, summary.json, summary.md, samples/, curves.png} and print a table

Every stage goes through the same code as `taming train`. `--quick` runs a fraction of the steps
(a test-sized pipeline); `--steps` scales all of them. Times are wall seconds and process CPU seconds.
"""
from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from taming.data.code_crops import CodeCrops
from taming.data.code_shards import CodeEncoder, variants
from taming.data.codes import write_code_arrays
from taming.data.landscapes import N_LABELS, ProceduralLandscapes, colorize
from taming.eval.likelihood import evaluate_likelihood
from taming.flags import POSITIVE, added, flag
from taming.generation.conditioning import Condition
from taming.generation.drawing import SamplingSpec, sample_grid
from taming.generation.runs import LoadedRun
from taming.images import channels_first
from taming.precision import add_flag

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_STEPS = {"vqgan": 1200, "segvq": 600, "transformer": 1500}
QUICK_STEPS = {"vqgan": 120, "segvq": 30, "transformer": 80}
SCENE, WINDOW_PX = 64, 32  # scenes are 64x64 px; models see 32x32 windows (8x8 codes)
PANORAMA = (64, 256)
SEGMENTER_SCENES = 512  # real training scenes the map-agreement network learns from


@dataclass
class DemoOptions:
    """What `taming demo` parsed (its flags are generated from these fields)."""
    out: str = flag("--out", default="outputs/demo", help="output folder")
    quick: bool = flag("--quick", default=False, action="store_true",
                       help="a small fraction of the steps (a pipeline check)")
    steps: float = flag("--steps", default=1.0, type=POSITIVE, help="scale every stage's step count")
    seed: int = flag("--seed", default=23, type=int)
    tokenize_limit: int | None = flag("--tokenize-limit", type=int, help="training scenes to tokenize "
                                      "(default 2000, 200 with --quick); flips double them")
    samples: int = flag("--samples", default=32, type=int, help="conditional samples to draw (held-out maps)")
    top_k: int = flag("--top-k", default=20, type=int)
    temperature: float = flag("--temperature", default=0.7, type=POSITIVE,
                              help="sampling temperature (default 0.7; BENCHMARKS.md, \"Demo\")")
    precision: str = added(add_flag, "auto")
    stride: int | None = flag("--stride", type=int, help="sliding-window stride in codes (1: the exact window per "
                              "code; default 2: 4x fewer windows; 4 with --quick)")
    panoramas: int | None = flag("--panoramas", type=int, help="wide landscapes to sample (default 4, 1 with --quick); "
                                 "their map agreement is the mean")
    evaluate_only: bool = flag("--evaluate-only", default=False, action="store_true",
                               help="no training: sample and evaluate again with the models of the earlier run in "
                                    "--out (e.g. other sampling settings), and rewrite its report")
    panorama_width: int | None = flag("--panorama-width", type=int, help=f"panorama width in pixels (default "
                                      f"{PANORAMA[1]}, 128 with --quick; height {PANORAMA[0]})")


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (data workers), user + system."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Clock:
    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()

    def read(self) -> dict[str, float]:
        return {"seconds": time.perf_counter() - self.wall, "cpu_seconds": cpu_seconds() - self.cpu}


def train_stage(name: str, base: list[str], steps: int, logdir: Path, seed: int, overrides: list[str]) -> dict:
    from taming.training.trainer import TrainOptions, run

    print(f"\n=== {name}: {steps} steps ({' + '.join(Path(b).name for b in base)}) ===", flush=True)
    clock = Clock()
    job = run(TrainOptions(base=base, train=True, name=name, seed=seed, logdir=str(logdir), no_test=True,
                           max_steps=steps, accelerator="cpu",
                           overrides=["lightning.trainer.enable_model_summary=false", *overrides]))
    times = clock.read()
    return {"job": job, **times, "steps": steps, "steps_per_s": steps / times["seconds"],
            "ckpt": str(job.paths.ckptdir / "last.ckpt"), "run": str(job.paths.logdir)}


def scenes(split: str, n: int, height: int = SCENE, width: int = SCENE, seed: int = 0,
           start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Landscapes start..n-1: images (n - start, 3, H, W) in [-1, 1] and one-hot maps (n - start, 8, H, W)."""
    data = ProceduralLandscapes(height=height, width=width, length=n, seed=seed, split=split)
    items = [data[i] for i in range(start, n)]
    return tuple(channels_first(np.stack([it[key] for it in items])) for key in ("image", "segmentation"))


@torch.no_grad()
def tokenize(model: Any, out: Path, n_train: int, n_val: int) -> dict:
    """Whole-scene code grids (N, 16, 16) of images and maps, training scenes with their mirror images."""
    clock, folders, encoder = Clock(), {}, CodeEncoder(model)
    for split, n, flip in (("train", n_train, True), ("validation", n_val, False)):
        zs, cs = [], []
        for start in range(0, n, 64):
            x, c = scenes(split, min(n, start + 64), start=start)
            for _, vx, vc in variants(x, c, flip, crops=0, crop_size=None, seed=0, first=start):
                z, cc = encoder.encode(vx, vc)  # (B, 16, 16) each
                zs.append(z)
                cs.append(cc)
        folders[split] = write_code_arrays(out / split, torch.cat(zs), torch.cat(cs))
    return {**clock.read(), "train_grids": 2 * n_train, "folders": {k: str(v) for k, v in folders.items()}}


def code_data_config(folders: dict, batch_size: int, path: Path) -> str:
    from omegaconf import OmegaConf

    window = WINDOW_PX // 4
    params: dict[str, Any] = {"batch_size": batch_size, "num_workers": 0}
    for split, fixed in (("train", False), ("validation", True)):
        params[split] = {"target": "taming.data.code_crops.CodeCrops",
                         "params": {"folder": str(Path(folders[split]).resolve()), "size": window, "fixed": fixed}}
    OmegaConf.save(OmegaConf.create({"data": {"target": "main.DataModuleFromConfig", "params": params}}), path)
    return str(path)


def validation_bits(model: Any, folder: str, batch: int = 64) -> dict:
    """NLL of fixed 8x8 validation windows: nats/code, bits per dim (per pixel channel), uniform baseline."""
    windows = DataLoader(CodeCrops(folder, WINDOW_PX // 4, fixed=True), batch_size=batch)
    result = evaluate_likelihood(model, windows)
    return {"val_nll": result["nll_per_code"], **{k: result[k] for k in ("bits_per_dim", "uniform_bits_per_dim")}}


@torch.no_grad()
def sample_maps(model: Any, maps: torch.Tensor, spec: SamplingSpec) -> torch.Tensor:
    """Images (B, 3, H, W) for one-hot maps (B, 8, H, W) of any size: the sliding window over the codes."""
    quant_c, c_codes = model.encode_to_c(maps)
    c_codes = c_codes.reshape(len(maps), *quant_c.shape[2:])
    codes = sample_grid(LoadedRun.of(model), Condition(c_codes.reshape(len(maps), -1), c_codes), spec)  # (B, h, w)
    return model.first_stage_model.decode_codes(codes).clamp(-1, 1)


@torch.no_grad()
def map_reconstruction(cond_stage: Any, maps: torch.Tensor) -> dict:
    """How much of the maps the cond stage's codes keep: pixel accuracy and the mean of per-class accuracies
    (small classes such as trees and rocks are what a weak segmentation VQ loses first)."""
    labels = maps.argmax(1)
    predicted = cond_stage.decode(cond_stage.encode(maps)[0]).argmax(1)
    per_class = [(predicted[labels == k] == k).float().mean().item() for k in range(maps.shape[1]) if (labels == k).any()]
    return {"pixel_accuracy": (predicted == labels).float().mean().item(), "mean_class_accuracy": sum(per_class) / len(per_class)}


def save(images: torch.Tensor, path: Path, nrow: int, scale: int = 2) -> str:
    from taming.images import save_grid

    save_grid(torch.nn.functional.interpolate(images.float(), scale_factor=scale, mode="nearest"), path, nrow=nrow)
    return str(path)


def run_demo(args: DemoOptions) -> dict:
    from taming.checkpoint import load_model
    from taming.eval.image_metrics import psnr, ssim
    from taming.eval.map_agreement import fit_segmenter, map_agreement
    from taming.eval.random_features import kd_randconv
    from taming.eval.report import plot_curves, write_index

    torch.set_num_threads(max(1, torch.get_num_threads()))
    args.stride = args.stride or (4 if args.quick else 2)
    panorama_size = (PANORAMA[0], args.panorama_width or (128 if args.quick else PANORAMA[1]))
    out = Path(args.out)
    steps = {k: max(2, int(round(v * args.steps))) for k, v in (QUICK_STEPS if args.quick else DEFAULT_STEPS).items()}
    logdir, total = out / "logs", Clock()

    if args.evaluate_only:
        vqgan, gpt_model, earlier = trained_models(out)
        stages, tok, steps = earlier["stages"], earlier["tokenize"], earlier["steps"]
        codes = str(out / "codes" / "validation")
    else:
        vq = train_stage("vqgan", [str(CONFIGS / "landscapes_vqgan.yaml")], steps["vqgan"], logdir, args.seed, [])
        seg = train_stage("segvq", [str(CONFIGS / "landscapes_segvq.yaml")], steps["segvq"], logdir, args.seed, [])
        stage_ckpts = [f"model.params.first_stage_config.params.ckpt_path={vq['ckpt']}",
                       f"model.params.cond_stage_config.params.ckpt_path={seg['ckpt']}"]
        tr_config = str(CONFIGS / "landscapes_transformer.yaml")
        print("\n=== tokenize: whole 64x64 scenes, image and map codes, with flips ===", flush=True)
        model, _ = load_model(tr_config, None, stage_ckpts)
        tok = tokenize(model, out / "codes", args.tokenize_limit or (200 if args.quick else 2000), 64 if args.quick else 256)
        data_yaml = code_data_config(tok["folders"], 32, out / "codes" / "data.yaml")
        # its image logger would sample at step 0 (untrained, and slow); the samples come at the end instead
        tr = train_stage("transformer", [tr_config, data_yaml], steps["transformer"], logdir, args.seed,
                         stage_ckpts + ["lightning.callbacks.image_logger=null"])
        gpt_model = tr["job"].model.eval()
        vqgan, stages = vq["job"].model.eval(), {"vqgan": vq, "segvq": seg, "transformer": tr}
        codes = tok["folders"]["validation"]

    print("\n=== evaluation and sampling ===", flush=True)
    clock, samples_dir = Clock(), out / "samples"
    n = args.samples
    segmenter = fit_segmenter(*scenes("train", SEGMENTER_SCENES), N_LABELS, seed=args.seed)
    x, c = scenes("validation", n + max(n, 64))  # held-out: the first n give maps to sample from, the rest are references
    with torch.no_grad():
        xrec = vqgan.decode_codes(vqgan.encode_to_codes(x)).clamp(-1, 1)
        codes_used = int(vqgan.encode_to_codes(x).unique().numel())
    spec = SamplingSpec(top_k=args.top_k, temperature=args.temperature, seed=args.seed, precision=args.precision,
                        stride=args.stride)
    samples = sample_maps(gpt_model, c[:n], spec)
    pano_x, pano_c = scenes("test", args.panoramas or (1 if args.quick else 4), *panorama_size, seed=args.seed)
    pano = sample_maps(gpt_model, pano_c, spec)
    scored = {name: map_agreement(segmenter, images, maps, N_LABELS) for name, images, maps in (
        ("real", x, c), ("reconstructions", xrec, c), ("samples", samples, c[:n]), ("panorama", pano, pano_c),
        ("real_panorama", pano_x, pano_c))}
    agreement = {name: s["pixel_accuracy"].mean().item() for name, s in scored.items()}
    agreement["each_panorama"] = scored["panorama"]["pixel_accuracy"].tolist()  # one panorama is one draw
    agreement["miou"] = {name: s["miou"] for name, s in scored.items()}
    quality = {"psnr": psnr(x, xrec).mean().item(), "ssim": ssim(x, xrec).mean().item(), "codes_in_use": codes_used,
               "codebook_size": int(vqgan.quantize.n_e),
               "kd_randconv_samples": kd_randconv(samples, x[n:]),
               "kd_randconv_reconstructions": kd_randconv(xrec[:n], x[n:]),
               "kd_randconv_real": kd_randconv(x[:n], x[n:])}
    bits = validation_bits(gpt_model, codes)
    maps = map_reconstruction(gpt_model.cond_stage_model, c)
    shown = min(n, 16)  # rows of the sample figure
    images = {"inputs_and_reconstructions": save(torch.stack([x[:8], xrec[:8]], 1).flatten(0, 1), samples_dir / "reconstructions.png", 4),
              "conditional_samples": save(torch.stack([colorize(c[:shown]), samples[:shown], x[:shown]], 1).flatten(0, 1),
                                          samples_dir / "conditional_samples.png", 6),
              "panorama": save(torch.stack([colorize(pano_c), pano, pano_x], 1).flatten(0, 1), samples_dir / "panorama.png", 1)}
    sampling = clock.read()
    summary = {
        "steps": steps, "precision": args.precision, "top_k": args.top_k, "temperature": args.temperature,
        "stages": {name: {k: s[k] for k in ("steps", "seconds", "cpu_seconds", "steps_per_s", "run", "ckpt")}
                   for name, s in stages.items()},
        "tokenize": {k: tok[k] for k in ("seconds", "cpu_seconds", "train_grids")},
        "evaluation": sampling, "reconstruction": quality, "likelihood": bits, "map_codes": maps, "map_agreement": agreement,
        "images": images, **run_totals(total.read(), earlier if args.evaluate_only else None, sampling),
    }
    summary["images"]["curves"] = str(plot_curves({k: summary["stages"][k]["run"] for k in summary["stages"]},
                                                  out / "curves.png"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    rows = summary_rows(summary)
    table = markdown(rows)
    (out / "summary.md").write_text("# taming demo\n\n" + table + "\n")
    write_index(out, "taming demo: procedural landscapes", rows, [
        ("inputs (odd) and their VQGAN reconstructions (even), 64x64 px shown x2", images["inputs_and_reconstructions"]),
        ("held-out map | sample for it (sliding window, 16x16 codes) | the real image of that map", images["conditional_samples"]),
        (f"{len(pano)} panoramas {panorama_size[0]}x{panorama_size[1]} px, each: map, sample, the real image of that map",
         images["panorama"]),
        ("training curves (CSV logs)", summary["images"]["curves"])])
    print("\n" + table)
    print(f"\nEverything is under {out}/: index.html, summary.json, samples/*.png, logs/ (run folders), codes/")
    return summary


def trained_models(out: Path) -> tuple[Any, Any, dict]:
    """The VQGAN, the transformer and the summary of the finished demo run in `out`."""
    from taming.checkpoint import load_model

    path = out / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no finished demo run there to evaluate again (run `taming demo --out {out}` first)")
    earlier = json.loads(path.read_text())
    stage_ckpts = [f"model.params.first_stage_config.params.ckpt_path={earlier['stages']['vqgan']['ckpt']}",
                   f"model.params.cond_stage_config.params.ckpt_path={earlier['stages']['segvq']['ckpt']}"]
    gpt_model, _ = load_model(str(CONFIGS / "landscapes_transformer.yaml"), earlier["stages"]["transformer"]["ckpt"],
                              stage_ckpts)
    return gpt_model.first_stage_model.eval(), gpt_model, earlier


def run_totals(this_run: dict, earlier: dict | None, evaluation: dict) -> dict:
    """The run's total time: this process's, or with --evaluate-only the earlier run's with this evaluation
    in place of its own."""
    if earlier is None:
        return {"total_seconds": this_run["seconds"], "total_cpu_seconds": this_run["cpu_seconds"]}
    return {f"total_{k}": earlier[f"total_{k}"] - earlier["evaluation"][k] + evaluation[k] for k in ("seconds", "cpu_seconds")}


def summary_rows(s: dict) -> list[tuple]:
    st, q, b, a = s["stages"], s["reconstruction"], s["likelihood"], s["map_agreement"]
    rows: list[tuple] = [("what", "time (s)", "CPU (s)", "result")]
    rows.append((f"VQGAN, {st['vqgan']['steps']} steps", st["vqgan"]["seconds"], st["vqgan"]["cpu_seconds"],
                 f"PSNR {q['psnr']:.2f} dB, SSIM {q['ssim']:.3f}, {q['codes_in_use']}/{q['codebook_size']} codes in use"))
    m = s["map_codes"]
    rows.append((f"segmentation VQ, {st['segvq']['steps']} steps", st["segvq"]["seconds"], st["segvq"]["cpu_seconds"],
                 f"maps decoded from their codes: pixel accuracy {m['pixel_accuracy']:.3f}, "
                 f"mean class accuracy {m['mean_class_accuracy']:.3f}"))
    rows.append(("tokenize", s["tokenize"]["seconds"], s["tokenize"]["cpu_seconds"],
                 f"{s['tokenize']['train_grids']} code grids 16x16"))
    rows.append((f"GPT, {st['transformer']['steps']} steps", st["transformer"]["seconds"],
                 st["transformer"]["cpu_seconds"],
                 f"val {b['bits_per_dim']:.4f} bits/dim (uniform codes: {b['uniform_bits_per_dim']:.4f})"))
    rows.append(("sampling and evaluation", s["evaluation"]["seconds"], s["evaluation"]["cpu_seconds"],
                 f"KD-randconv to held-out images (KID's kernel distance on seeded random conv features, not KID): "
                 f"samples {q['kd_randconv_samples']:.4f}, reconstructions {q['kd_randconv_reconstructions']:.4f}, "
                 f"real {q['kd_randconv_real']:.4f}"))
    iou = a["miou"]
    rows.append(("map agreement", "-", "-",
                 f"a segmentation network's pixel accuracy (mIoU): real {a['real']:.3f} ({iou['real']:.3f}), "
                 f"reconstructions {a['reconstructions']:.3f} ({iou['reconstructions']:.3f}), samples "
                 f"{a['samples']:.3f} ({iou['samples']:.3f}; {a['samples'] / a['real']:.0%} of real), panoramas "
                 f"{a['panorama']:.3f} ({iou['panorama']:.3f}; {a['panorama'] / a['real']:.0%}; each "
                 f"{', '.join(f'{v:.3f}' for v in a['each_panorama'])}; their real images {a['real_panorama']:.3f})"))
    rows.append(("total", s["total_seconds"], s["total_cpu_seconds"], ""))
    return rows


def markdown(rows: list[tuple]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    return "\n".join(lines)
