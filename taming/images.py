"""Pictures of model tensors: image grids as uint8 arrays and PNG files (without torchvision), and
label maps coloured for display.

The image logger, the demo and the app tile batches of model images (in [-1, 1]) into one picture, 4 per row
as the original logger did, with a 2-pixel black border between tiles.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def channels_first(x: Any) -> torch.Tensor:
    """A batch entry channels-last (B, H, W[, C]) (array or tensor) -> float (B, C, H, W), contiguous:
    the layout the models read. The one place datasets' images and maps change layout."""
    x = torch.as_tensor(x)
    x = x[..., None] if x.dim() == 3 else x
    return x.permute(0, 3, 1, 2).contiguous().float()


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) with C in {1, 3} -> (B, 3, H, W); other channel counts must be colorized first."""
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    if images.shape[1] != 3:
        raise ValueError(f"cannot show images with {images.shape[1]} channels as RGB; colorize them first")
    return images


def make_grid(images: torch.Tensor, nrow: int = 4, padding: int = 2) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> (rows*(H+p)+p, cols*(W+p)+p, 3) uint8."""
    images = to_rgb(images.detach().float().cpu())
    b, _, h, w = images.shape
    cols = min(nrow, b)
    rows = math.ceil(b / cols)
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, 3), np.uint8)
    for i in range(b):
        r, c = divmod(i, cols)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        grid[y:y + h, x:x + w] = pixels[i]
    return grid


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 4, padding: int = 2) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_grid(images, nrow=nrow, padding=padding)).save(path)
    return path


def labels_to_rgb(stage: torch.nn.Module, maps: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label scores (B, num_classes, H, W) -> one-hot of the argmax label, coloured by the segmentation
    model's own projection (`stage.to_rgb`) -> (B, 3, H, W) in [-1, 1]."""
    labels = maps.argmax(dim=1)  # (B, H, W)
    one_hot = F.one_hot(labels, num_classes=num_classes).permute(0, 3, 1, 2).float()
    return stage.to_rgb(one_hot)
