"""What the page shows: a line about the model, tensors as RGB uint8 pictures, PNG bytes to download."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from taming.app.conditioning import SEGMENTATION, Example, condition_kind
from taming.app.loading import LoadedRun
from taming.data.landscapes import PALETTE, colorize
from taming.images import labels_to_rgb, make_grid

SHOWN_SIDE = 256  # small images are enlarged (nearest) to about this many pixels for the page


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


def enlarged(pixels: np.ndarray, side: int = SHOWN_SIDE) -> np.ndarray:
    """(H, W, 3) repeated by a whole factor so the shorter side reaches about `side` (sharp code blocks)."""
    factor = max(1, side // min(pixels.shape[:2]))
    return pixels.repeat(factor, axis=0).repeat(factor, axis=1)


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
