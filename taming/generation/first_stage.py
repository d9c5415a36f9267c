"""A first stage on files: images -> reconstructions, images -> codes (.npy), codes -> images.

Images are read robustly (taming.data.imageio: any mode to RGB, one error naming a bad file), then
either resized so the smaller side is `size` and centre-cropped to size x size (the datasets'
evaluation transform), or, without a size, centre-cropped to the nearest multiple of the model's
downsampling factor. Each output is named after its input's stem and written atomically; existing
outputs are skipped, so a stopped job continues. Codes are saved as int64 arrays (h, w), in raster
order, the grids `VQGAN.decode_codes` takes; a (B, h, w) file decodes to <stem>_000.png ...
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from taming.config import ConfigError
from taming.images import channels_first
from taming.data.imageio import read_rgb, to_float_image
from taming.data.transforms import PairedTransform
from taming.generation.files import save_npy, save_png, to_uint8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
Done = Callable[[int], None]


def downsample_factor(model: torch.nn.Module) -> int:
    return 2 ** (model.encoder.num_resolutions - 1)


def expand_inputs(inputs: Sequence[str], suffixes: Iterable[str]) -> list[Path]:
    """Files as given, and the matching files of folders (sorted); one error for a missing path or
    for two inputs with one stem (their outputs would share a name)."""
    suffixes = tuple(suffixes)
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    if not files:
        raise ConfigError(f"no input files ({', '.join(suffixes)}) in {', '.join(inputs)}")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise ConfigError(f"two inputs named {f.stem!r} ({stems[f.stem]} and {f}): their outputs would collide")
        stems[f.stem] = f
    return files


def load_image(path: Path, factor: int, size: int | None = None) -> torch.Tensor:
    """An image file -> (1, 3, H, W) in [-1, 1], H and W multiples of `factor`."""
    rgb = read_rgb(str(path))
    if size is not None:
        if size % factor:
            raise ConfigError(f"--size {size} is not a multiple of the model's downsampling factor {factor}")
        rgb = PairedTransform(size=size)(rgb)["image"]
    else:
        h, w = (rgb.shape[0] // factor) * factor, (rgb.shape[1] // factor) * factor
        if h == 0 or w == 0:
            raise ConfigError(f"{path}: {rgb.shape[1]}x{rgb.shape[0]} px is smaller than one code ({factor} px)")
        rgb = PairedTransform(crop_size=(h, w))(rgb)["image"]
    return channels_first(to_float_image(rgb)[None])


def _device(model: torch.nn.Module) -> torch.device:
    return model.post_quant_conv.weight.device


@torch.no_grad()
def _each_image(model: torch.nn.Module, files: Sequence[Path], out: Path, suffix: str, size: int | None,
                done: Done | None, write: Callable[[torch.Tensor, Path], object]) -> int:
    """write(codes (1, h, w), out/<stem><suffix>) for each image whose output does not exist -> how many."""
    count = 0
    for f in files:
        target = out / f"{f.stem}{suffix}"
        if target.exists():
            continue
        write(model.encode_to_codes(load_image(f, downsample_factor(model), size).to(_device(model))), target)
        count += 1
        if done:
            done(1)
    return count


def reconstruct(model: torch.nn.Module, files: Sequence[Path], out: Path, size: int | None = None,
                done: Done | None = None) -> int:
    """Each image through encode -> quantize -> decode, written to out/<stem>.png -> how many written."""
    return _each_image(model, files, out, ".png", size, done,
                       lambda codes, target: save_png(to_uint8(model.decode_codes(codes))[0], target))


def encode(model: torch.nn.Module, files: Sequence[Path], out: Path, size: int | None = None,
           done: Done | None = None) -> int:
    """Each image's code grid (h, w) to out/<stem>.npy -> how many written."""
    return _each_image(model, files, out, ".npy", size, done,
                       lambda codes, target: save_npy(codes[0].cpu().numpy().astype(np.int64), target))


def read_codes(path: Path, n_embed: int) -> np.ndarray:
    """A .npy of codes (h, w) or (B, h, w) -> (B, h, w) int64, checked against the codebook size."""
    try:
        codes = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ConfigError(f"{path}: not a .npy array of codes ({type(exc).__name__}: {exc})") from None
    if codes.ndim == 2:
        codes = codes[None]
    if codes.ndim != 3 or codes.dtype.kind not in "iu":
        raise ConfigError(f"{path}: codes must be integers of shape (h, w) or (B, h, w), got {codes.dtype} {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() >= n_embed):
        raise ConfigError(f"{path}: codes {codes.min()}..{codes.max()} are outside the codebook (0..{n_embed - 1})")
    return codes.astype(np.int64)


@torch.no_grad()
def decode(model: torch.nn.Module, files: Sequence[Path], out: Path, done: Done | None = None) -> int:
    """Each .npy of codes to out/<stem>.png (or <stem>_000.png ... for a stack) -> how many images written."""
    count = 0
    for f in files:
        codes = read_codes(f, getattr(model.quantize, "re_embed", None) or model.n_embed)  # remapped codebooks: re_embed
        names = [f"{f.stem}.png"] if codes.shape[0] == 1 else [f"{f.stem}_{b:03d}.png" for b in range(codes.shape[0])]
        for b, name in enumerate(names):
            if (out / name).exists():
                continue
            image = model.decode_codes(torch.from_numpy(codes[b:b + 1]).to(_device(model)))
            save_png(to_uint8(image)[0], out / name)
            count += 1
        if done:
            done(1)
    return count
