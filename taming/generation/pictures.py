"""What the page shows: a line about the model, tensors as RGB uint8 pictures, PNG bytes to download."""
from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from taming.generation.conditioning import SEGMENTATION, Example, condition_kind
from taming.generation.runs import LoadedRun
from taming.data.landscapes import PALETTE, colorize
from taming.images import labels_to_rgb, make_grid

SHOWN_SIDE = 256  # small images are enlarged (nearest) to about this many pixels for the page
SHOWN_MAX_WIDTH = 960  # ... and never wider than this (wide panoramas fit the page unscaled)


def describe_run(run: LoadedRun) -> str:
    """One line about the loaded model, for the page."""
    h, w = run.window
    gpt_params = sum(p.numel() for p in run.model.transformer.parameters())
    return (f"conditioning: {condition_kind(run.model)}; training window {h}x{w} codes "
            f"({h * run.factor}x{w * run.factor} px); GPT {gpt_params / 1e6:.2f} M parameters, "
            f"{run.model.vocab_size} codes; on {run.device.type}")


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) in [-1, 1], C in {1, 3} -> (H, W, 3) uint8."""
    return make_grid(images[:1], nrow=1, padding=0)


def segmentation_rgb(run: LoadedRun, seg: torch.Tensor) -> torch.Tensor:
    """Label maps (1, n_labels, H, W) -> (1, 3, H, W) in [-1, 1]: the landscape palette for its 8 labels,
    else the cond stage's own colour projection (the one its training images were logged with)."""
    if seg.shape[1] == len(PALETTE):
        return colorize(seg.cpu())
    return labels_to_rgb(run.model.cond_stage_model, seg.to(run.device), seg.shape[1])


def condition_picture(run: LoadedRun, example: Example) -> np.ndarray | None:
    """The example's spatial conditioning as (H, W, 3) uint8; None for a class label or no conditioning."""
    c = example.condition
    if c is None or c.dim() != 4:
        return None
    if condition_kind(run.model) == SEGMENTATION:
        c = segmentation_rgb(run, c)
    elif c.shape[1] not in (1, 3):
        c = c[:, :3]  # an unknown many-channel input: its first three channels
    return to_pixels(c)


def shown_factor(size: tuple[int, int], side: int = SHOWN_SIDE, max_width: int = SHOWN_MAX_WIDTH) -> int:
    """The whole enlargement of an (H, W) picture on the page: the shorter side to about `side`, the
    width at most `max_width`; every picture of one sample uses the same factor, so they line up."""
    h, w = size
    return max(1, min(side // min(h, w), max_width // w))


def enlarged(pixels: np.ndarray, side: int = SHOWN_SIDE, factor: int | None = None) -> np.ndarray:
    """(H, W, 3) repeated by a whole factor (nearest neighbour: sharp code blocks, no browser blur)."""
    factor = factor or shown_factor(pixels.shape[:2], side)
    return pixels.repeat(factor, axis=0).repeat(factor, axis=1)


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe version of a caption or run name."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", Path(text).name if "/" in text else text).strip("-")
    return cleaned[:limit] or "x"


def download_name(run_name: str, caption: str, settings: Any) -> str:
    """A name no other sample shares: the run, the conditioning and every setting, plus a hash of all."""
    h, w = settings.size
    digest = hashlib.sha1(repr((run_name, caption, settings)).encode()).hexdigest()[:8]
    keep = f"_keep{settings.keep_rows}" if settings.keep_rows else ""
    return (f"{slug(run_name)}_{slug(caption)}_{h}x{w}_k{settings.top_k or 'all'}_t{settings.temperature:g}"
            f"_seed{settings.seed}{keep}_{digest}.png")


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
