"""Sample metrics between two image folders (or a folder and cached statistics), torch-fidelity style.

Folders are read flat, in sorted file-name order (the order fixes KID subsets and IS splits), through
taming.data.imageio (any mode -> RGB uint8); a file that cannot be decoded stops the evaluation with its
name, since silently skipping would change the numbers. Images of different sizes are fine: each batch
holds images of one size, and the network resizes all of them to 299x299.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from taming.data.errors import DataError
from taming.data.imageio import read_rgb
from taming.eval import fidelity

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
METRICS = ("fid", "kid", "isc", "prc")


def list_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def same_size_batches(files: Iterable[Path], batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 (B, 3, H, W) batches of consecutive same-size images."""
    batch: list[np.ndarray] = []
    for path in files:
        image = read_rgb(path)  # (H, W, 3) uint8; UnreadableFile names the file
        if batch and (len(batch) == batch_size or image.shape != batch[0].shape):
            yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)
            batch = []
        batch.append(image)
    if batch:
        yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)


@torch.no_grad()
def extract_features(net: torch.nn.Module, batches: Iterable[torch.Tensor],
                     keys: tuple[str, ...] = ("pool", "logits_unbiased")) -> dict[str, torch.Tensor]:
    """Concatenated float32 features {key: (N, D)} of uint8 image batches, on CPU."""
    device = next(net.parameters()).device
    out: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for images in batches:
        feats = net(images.to(device))
        for k in keys:
            out[k].append(feats[k].float().cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def folder_features(net: torch.nn.Module, folder, batch_size: int = 64, progress: bool = False
                    ) -> dict[str, torch.Tensor]:
    files = list_images(folder)
    if progress:  # on stderr: 50,000 images take a while on a CPU
        files = tqdm(files, desc=f"Inception features of {folder}", unit="img", file=sys.stderr, leave=False)
    return extract_features(net, same_size_batches(files, batch_size))


def save_statistics(path: str | os.PathLike, mu: np.ndarray, sigma: np.ndarray) -> Path:
    """The pytorch-fid statistics file: an .npz with `mu` (D,) and `sigma` (D, D)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # a file object keeps numpy from appending a second ".npz"
        np.savez(f, mu=mu, sigma=sigma)
    return path


def load_statistics(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
    except KeyError as exc:
        raise DataError(f"{path}: not FID statistics (an .npz with 'mu' and 'sigma'): missing {exc}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read FID statistics: {exc}") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0],) * 2:
        raise DataError(f"{path}: mu {mu.shape} and sigma {sigma.shape} are not (D,) and (D, D)")
    return mu, sigma


def parse_metrics(text: str) -> tuple[str, ...]:
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise ValueError(f"unknown metric(s) {', '.join(bad) or '(none given)'}; choose from {','.join(METRICS)}")
    return names


def sample_metrics(net: torch.nn.Module, real, fake, metrics: Iterable[str] = METRICS, batch_size: int = 64,
                   kid_subsets: int = 100, kid_subset_size: int = 1000, isc_splits: int = 10,
                   save_real_stats=None, progress: bool = False) -> dict:
    """torch-fidelity's result keys for the requested metrics; `real` is a folder or an .npz of statistics."""
    metrics = tuple(metrics)
    real_is_stats = Path(real).is_file()
    if real_is_stats and set(metrics) & {"kid", "prc"}:
        raise DataError(f"--real {real} is a statistics file, which holds no features: it serves FID "
                        "(and IS, which uses --fake only) but not kid or prc; pass an image folder")
    fake_f = folder_features(net, fake, batch_size, progress)
    real_f = None if real_is_stats else folder_features(net, real, batch_size, progress)
    result: dict = {"images_fake": len(fake_f["pool"])}
    if real_f is not None:
        result["images_real"] = len(real_f["pool"])
    if "isc" in metrics:
        result.update(fidelity.inception_score(fake_f["logits_unbiased"], isc_splits))
    if save_real_stats:
        stats = load_statistics(real) if real_is_stats else fidelity.feature_statistics(real_f["pool"])
        save_statistics(save_real_stats, *stats)
    if "fid" in metrics:
        if real_is_stats:
            fake_stats = fidelity.feature_statistics(fake_f["pool"])
            result[fidelity.FID] = fidelity.frechet_distance(*fake_stats, *load_statistics(real))
        else:
            result[fidelity.FID] = fidelity.frechet_distance_of_features(fake_f["pool"], real_f["pool"])
    if "kid" in metrics:
        result.update(fidelity.kernel_inception_distance(fake_f["pool"], real_f["pool"], kid_subsets, kid_subset_size))
    if "prc" in metrics:
        result.update(fidelity.precision_recall(real_f["pool"], fake_f["pool"]))
    return result
