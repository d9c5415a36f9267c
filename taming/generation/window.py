"""One large image from a conditioning map of any size (a segmentation or depth map, or a
low-resolution image), through the sliding window, optionally with an animation of the sampling.

The map is read from a file (segmentation: a class-index PNG, mode L or P; depth: the RGBA-packed
float32 PNG of the depth datasets or any single-channel image, normalized to [-1, 1] by its own
min and max as the datasets do; image: any RGB picture), resized to the output size (labels
nearest, the rest bilinear), encoded into conditioning codes on the output's code grid, and the
image codes are sampled with `taming.sampling.sample_window` (exactly `generate` at the training
size). Animation frames decode the codes sampled so far; codes not sampled yet are grey. Completion
(`spec.keep_rows`): an image file, resized to the output size, gives the codes whose top rows are kept.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from taming.generation.conditioning import SEGMENTATION, Example, condition_kind, encode_condition
from taming.generation.drawing import Progress, SamplingSpec, decode_codes, image_codes, masked_image, sample_grid
from taming.generation.runs import LoadedRun
from taming.config import ConfigError
from taming.data.imageio import normalize_depth, read_depth, read_labels, read_rgb, to_float_image
from taming.data.segmentation import one_hot
from taming.data.transforms import resize_array
from taming.generation.files import save_png, to_uint8
from taming.images import channels_first

def parse_size(text: str | None) -> tuple[int, int] | None:
    """'WxH' (pixels) -> (W, H)."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1024x256") from None
    if w < 1 or h < 1:
        raise ConfigError(f"--size {text!r}: width and height must be >= 1")
    return w, h


def read_condition(run: LoadedRun, path: str, size: tuple[int, int] | None) -> torch.Tensor:
    """A map file -> the cond stage's input (1, C, H, W) at `size` (W, H) pixels (default: the file's
    size cut down to a multiple of the downsampling factor)."""
    kind = condition_kind(run.model)
    if kind == SEGMENTATION:
        array = read_labels(path)  # (H, W) class indices
    elif kind == "depth":
        array = normalize_depth(read_depth(path))  # (H, W) in [-1, 1]
    elif kind == "image":
        array = to_float_image(read_rgb(path))  # (H, W, 3) in [-1, 1]
    else:
        raise ConfigError(f"{run.source.name}: the model is conditioned on {kind}, not on a map; use taming sample")
    f = run.factor
    w, h = size or (array.shape[1] // f * f, array.shape[0] // f * f)
    if w % f or h % f or w < f or h < f:
        raise ConfigError(f"size {w}x{h} px: width and height must be positive multiples of {f} px (one code)")
    array = resize_array(array, (h, w), "nearest" if kind == SEGMENTATION else "bilinear")
    if kind == SEGMENTATION:
        n_labels = run.model.cond_stage_model.encoder.in_channels
        array = one_hot(array, n_labels, path)  # (H, W, n_labels)
    return channels_first(np.asarray(array, dtype=np.float32)[None])


def read_image(path: str, size: tuple[int, int]) -> torch.Tensor:
    """An image file -> (1, 3, H, W) in [-1, 1] at `size` (H, W) pixels, resized bilinear."""
    return channels_first(resize_array(to_float_image(read_rgb(path)), size, "bilinear")[None])


def sample_map(run: LoadedRun, path: str, size: tuple[int, int] | None, spec: SamplingSpec, out: Path,
               animation: Path | None = None, frames: int = 24, progress: Progress | None = None,
               image: str | None = None) -> tuple[int, int]:
    """Sample the image for map `path`, write it to `out` (and the GIF) -> its size (W, H) in pixels.
    progress(fraction) is told of each whole percent sampled; `image`: the file completed (keep_rows)."""
    c = read_condition(run, path, size)
    given = image_codes(run, read_image(image, tuple(c.shape[-2:]))) if image else None
    condition = encode_condition(run, Example(None, c, Path(path).name))
    if condition.grid is None:
        raise ConfigError(f"{run.source.name}: its conditioning codes have no spatial grid; use taming sample")
    h, w = condition.grid.shape[1:]
    pictures: list[np.ndarray] = []

    def frame(codes: torch.Tensor, sampled: torch.Tensor) -> None:
        pictures.append(to_uint8(masked_image(run, codes, sampled))[0])

    codes = sample_grid(run, condition, replace(spec, size=(h, w)), progress, frame if animation else None,
                        given, preview_every=max(1, h * w // frames))
    image = to_uint8(decode_codes(run, codes))[0]
    save_png(image, out)
    if animation is not None:
        save_animation([*pictures, image], animation)
    return image.shape[1], image.shape[0]


def save_animation(pictures: list[np.ndarray], path: Path, ms_per_frame: int = 120, hold_ms: int = 1500) -> Path:
    """Frames (H, W, 3) uint8 -> an animated GIF (the last frame held)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(p) for p in pictures]
    durations = [ms_per_frame] * (len(images) - 1) + [hold_ms]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)
    return path
