"""Uploaded files as conditioning or as the image to complete, with size limits and one-line errors.

    segmentation map   a single-channel PNG of label indices (0..n_labels-1), or, for the landscapes'
                       8 labels, an RGB picture painted in their palette (each pixel -> nearest colour)
    image / depth map  any picture PIL reads; depth as a greyscale image
The picture is resized to the output size (label maps nearest, pictures with antialiasing).
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from taming.data.errors import DataError, UnreadableFile
from taming.data.imageio import open_image, to_rgb_array
from taming.data.landscapes import PALETTE

MAX_SIDE = 2048  # pixels; Streamlit's own limit on the file size is launch.MAX_UPLOAD_MB
MAX_BYTES = 10 * 2**20


def read_upload(data: bytes, name: str) -> Image.Image:
    """The uploaded picture, decoded; what is wrong with a file is said in plain words. The size in its
    header is checked before anything is decoded: a small file may unpack to gigabytes (a
    "decompression bomb")."""
    if len(data) > MAX_BYTES:
        raise DataError(f"{name}: {len(data) / 2**20:.1f} MB is more than the {MAX_BYTES // 2**20} MB allowed")
    if not data:
        raise DataError(f"{name} is empty (0 bytes): upload a PNG or JPEG picture")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the side check below refuses it
            with Image.open(io.BytesIO(data)) as header:  # reads the header only
                width, height = header.size
    except Image.DecompressionBombError:
        raise DataError(f"{name} is far too large: it says it holds more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels "
                        f"(pictures may be at most {MAX_SIDE} px per side); it was not opened") from None
    except Exception:  # UnidentifiedImageError and friends: not a picture at all
        raise DataError(f"{name} is not a picture: upload a PNG or JPEG file (this file's content is no image "
                        "format, whatever its name says)") from None
    if max(width, height) > MAX_SIDE:
        raise DataError(f"{name}: {width}x{height} px is larger than the {MAX_SIDE} px per side allowed")
    try:
        return open_image(data, name)
    except UnreadableFile:
        raise DataError(f"{name} could not be read to the end: the picture is damaged or cut short") from None


def labels_from_upload(image: Image.Image, n_labels: int, name: str) -> np.ndarray:
    """(H, W) int64 label indices from a label PNG, or from a palette-coloured RGB picture (8 labels)."""
    if image.mode in ("L", "P", "I", "I;16"):
        labels = np.asarray(image).astype(np.int64)
        if labels.max() >= n_labels:
            raise DataError(f"{name}: label values {labels.min()}..{labels.max()} do not fit the model's "
                            f"{n_labels} labels (0..{n_labels - 1})")
        return labels
    if n_labels != len(PALETTE):
        raise DataError(f"{name}: a colour picture cannot be read as {n_labels} labels; upload a single-channel "
                        f"PNG of label indices 0..{n_labels - 1}")
    rgb = to_rgb_array(image).astype(np.float32) / 127.5 - 1  # (H, W, 3) in [-1, 1]
    return ((rgb[..., None, :] - PALETTE) ** 2).sum(-1).argmin(-1)


def segmentation_upload(data: bytes, name: str, n_labels: int, size: tuple[int, int]) -> torch.Tensor:
    """-> one-hot map (1, n_labels, H, W) at `size` pixels."""
    labels = torch.as_tensor(labels_from_upload(read_upload(data, name), n_labels, name))[None, None].float()
    labels = F.interpolate(labels, size=size, mode="nearest")[0, 0].long()
    return F.one_hot(labels, n_labels).permute(2, 0, 1)[None].float()


def image_upload(data: bytes, name: str, size: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """-> picture (1, channels, H, W) in [-1, 1] at `size` pixels (1 channel: greyscale, e.g. depth)."""
    image = read_upload(data, name)
    pixels = np.asarray(image.convert("L"))[..., None] if channels == 1 else to_rgb_array(image)
    x = torch.as_tensor(pixels.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
