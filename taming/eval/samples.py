"""Sample metrics between two image folders (or a folder and cached statistics), torch-fidelity style.

Folders are read flat, in sorted file-name order (the order fixes KID subsets and IS splits), through
taming.data.imageio (any mode -> RGB uint8); a file that cannot be decoded stops the evaluation with its
name, since silently skipping would change the numbers. Images of different sizes are fine: each batch
holds images of one size, and the networks resize all of them (Inception to 299x299, VGG16 to 224x224).

Feature networks, as torch-fidelity 0.4.0 picks them by default: FID, KID and IS on the FID Inception
network ("pool" 2048-d, "logits_unbiased"), precision/recall on VGG16's "fc2_relu" (4096-d). PRC on the
Inception pool features instead is an explicit choice (prc_net=None). torch-fidelity's PRC treats its
first input as the real set; here the roles are named: precision is the share of --fake inside the
--real manifold.
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
PRC_LAYER = "fc2_relu"  # torch-fidelity's default PRC layer of its "vgg16" extractor


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


def folder_features(net: torch.nn.Module, folder, batch_size: int = 64, progress: bool = False,
                    keys: tuple[str, ...] = ("pool", "logits_unbiased")) -> dict[str, torch.Tensor]:
    files = list_images(folder)
    if progress:  # on stderr: 50,000 images take a while on a CPU
        files = tqdm(files, desc=f"{type(net).__name__} features of {folder}", unit="img", file=sys.stderr,
                     leave=False)
    return extract_features(net, same_size_batches(files, batch_size), keys)


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


def check_inputs(real: str | os.PathLike, fake: str | os.PathLike) -> None:
    """Both inputs exist and hold what they should (images; or FID statistics as --real), before any
    feature is computed: a typo in --real must not cost the minutes --fake's features take."""
    if Path(real).is_file():
        load_statistics(real)
    elif not Path(real).exists():
        raise DataError(f"--real {real}: not found (an image folder, or an .npz of FID statistics)")
    else:
        list_images(real)
    if not Path(fake).exists():
        raise DataError(f"--fake {fake}: not found (a folder of generated images)")
    list_images(fake)


def parse_metrics(text: str) -> tuple[str, ...]:
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise ValueError(f"unknown metric(s) {', '.join(bad) or '(none given)'}; choose from {','.join(METRICS)}")
    return names


def sample_metrics(net: torch.nn.Module | None, real, fake, metrics: Iterable[str] = METRICS, batch_size: int = 64,
                   kid_subsets: int = 100, kid_subset_size: int = 1000, isc_splits: int = 10,
                   save_real_stats=None, progress: bool = False, prc_net: torch.nn.Module | None = None) -> dict:
    """torch-fidelity's result keys for the requested metrics; `real` is a folder or an .npz of statistics.
    `net` is the FID Inception network (None is fine when only prc on `prc_net` is asked); `prc_net` the
    VGG16 network for prc, or None for prc on `net`'s pool features."""
    metrics = tuple(metrics)
    check_inputs(real, fake)
    real_is_stats = Path(real).is_file()
    if real_is_stats and set(metrics) & {"kid", "prc"}:
        raise DataError(f"--real {real} is a statistics file, which holds no features: it serves FID "
                        "(and IS, which uses --fake only) but not kid or prc; pass an image folder")
    result: dict = {}
    if set(metrics) & {"fid", "kid", "isc"} or ("prc" in metrics and prc_net is None) or save_real_stats:
        result.update(_inception_metrics(net, real, fake, metrics, batch_size, kid_subsets, kid_subset_size,
                                         isc_splits, save_real_stats, progress, prc=prc_net is None))
    if "prc" in metrics and prc_net is not None:
        f_fake, f_real = (folder_features(prc_net, folder, batch_size, progress, keys=(PRC_LAYER,))[PRC_LAYER]
                          for folder in (fake, real))
        result.setdefault("images_fake", len(f_fake))
        result.setdefault("images_real", len(f_real))
        result.update(fidelity.precision_recall(f_real, f_fake))
        result["prc_features"] = f"vgg16 {PRC_LAYER}"
    return result


def _inception_metrics(net, real, fake, metrics, batch_size, kid_subsets, kid_subset_size, isc_splits,
                       save_real_stats, progress, prc: bool) -> dict:
    real_is_stats = Path(real).is_file()
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
    if prc and "prc" in metrics:
        result.update(fidelity.precision_recall(real_f["pool"], fake_f["pool"]))
        result["prc_features"] = "inception pool"
    return result
