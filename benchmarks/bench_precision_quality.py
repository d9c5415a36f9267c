"""The quality cost of each reduced precision, first stage: faceshq VQGAN config at 256 px on
S-FLCKR photos, each precision against exact float32.

- encode: the fraction of codes that change;
- decode: PSNR (dB, [0, 1] pixels) of the decoded images against float32's decode of the same codes.
Weights are random (seeded; no trained faceshq checkpoint is stored here): their outputs sit close to
many codes at once, so code flips are a worst case. The sampler's cost (validation NLL of bf16 and
int8 decoding) is measured by `bench_sampling.py --quality --cases none`.

    python benchmarks/bench_precision_quality.py [--images 4] [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from taming.config import load_config  # noqa: E402
from taming.precision import summary  # noqa: E402
from taming.tokenizer.vqgan import VQGAN  # noqa: E402
from taming.training.quality import psnr01  # noqa: E402
from workloads import SHARED, VQGAN_CONFIG  # noqa: E402


def photos(n: int) -> torch.Tensor:
    """n S-FLCKR photos, centre 256x256 crops of a 256-pixel smaller side -> (n, 3, 256, 256) in [-1, 1]."""
    files = sorted((SHARED / "data" / "sflckr" / "images").rglob("*.jpg"))[:n]
    out = []
    for f in files:
        im = Image.open(f).convert("RGB")
        s = 256 / min(im.size)
        im = im.resize((max(256, round(im.width * s)), max(256, round(im.height * s))), Image.BICUBIC)
        left, top = (im.width - 256) // 2, (im.height - 256) // 2
        a = np.asarray(im.crop((left, top, left + 256, top + 256)), dtype=np.float32) / 127.5 - 1
        out.append(torch.from_numpy(a).permute(2, 0, 1))
    return torch.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(summary("cpu"))
    torch.manual_seed(0)
    p = load_config(VQGAN_CONFIG).model.params
    exact = VQGAN(p.ddconfig, p.n_embed, p.embed_dim).eval()
    x = photos(args.images)
    with torch.no_grad():
        codes = torch.cat([exact.encode_to_codes(x[i:i + 1]) for i in range(len(x))])  # (n, 16, 16)
        ref = torch.cat([exact.decode_codes(codes[i:i + 1]) for i in range(len(x))])
    print(f"{'precision':22} {'codes changed':>14} {'decode PSNR vs fp32':>20}")
    for name in ("fp32", "bf16"):  # prepare_fast's two dtypes: channels_last fp32, bf16 convolutions
        model = VQGAN(p.ddconfig, p.n_embed, p.embed_dim).eval()
        model.load_state_dict(exact.state_dict())
        model.prepare_fast(torch.bfloat16 if name == "bf16" else None)
        with torch.no_grad():
            got = torch.cat([model.encode_to_codes(x[i:i + 1]) for i in range(len(x))])
            dec = torch.cat([model.decode_codes(codes[i:i + 1]) for i in range(len(x))])
        changed = 100 * (got != codes).float().mean().item()
        label = "channels_last fp32" if name == "fp32" else "bf16 (prepare_fast)"
        print(f"{label:22} {changed:13.2f}% {psnr01(ref, dec).mean().item():19.1f} dB")


if __name__ == "__main__":
    main()
