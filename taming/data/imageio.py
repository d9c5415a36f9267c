"""Robust image reading with PIL: every mode becomes what the models expect, bad files raise one error.

Mode handling (what a user's folder may hold):
- RGB: as is. CMYK, YCbCr, LAB, HSV: converted to RGB by PIL.
- Grayscale (L, 1): replicated to three channels.
- Transparency (RGBA, LA, PA, palette with a transparent colour): composited on WHITE, so a cut-out
  object on a transparent background trains as the object on white (dropping alpha would expose
  whatever colour the encoder left in transparent pixels, often black noise).
- 16-bit and 32-bit grayscale (I;16, I;16B, I) are scaled to 8 bit by /257 (65535 -> 255); float
  images (F) with values in [0, 1] are scaled by 255, otherwise treated like 16-bit.
Any file that cannot be decoded (missing, empty, truncated, corrupt, not an image) raises
`UnreadableFile`, which datasets catch and skip (see `taming.data.base.SkipLog`).
"""
from __future__ import annotations

import io
import os
from typing import Union

import numpy as np
from PIL import Image

from .errors import UnreadableFile

Source = Union[str, os.PathLike, bytes]

_WIDE_GRAY = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _name(source: Source, name: str | None) -> str:
    if name is not None:
        return name
    return "<bytes>" if isinstance(source, (bytes, bytearray)) else os.fspath(source)


def open_image(source: Source, name: str | None = None) -> Image.Image:
    """Open and fully decode an image (a path or the file's bytes); `UnreadableFile` if impossible."""
    where = _name(source, name)
    try:
        if isinstance(source, (bytes, bytearray)):
            if len(source) == 0:
                raise UnreadableFile(where, "empty file (0 bytes)")
            image = Image.open(io.BytesIO(source))
        else:
            if os.path.getsize(source) == 0:
                raise UnreadableFile(where, "empty file (0 bytes)")
            image = Image.open(source)
        image.load()  # decoding is lazy in PIL: truncation and corruption only show here
    except UnreadableFile:
        raise
    except FileNotFoundError:
        raise UnreadableFile(where, "file not found") from None
    except Exception as exc:  # UnidentifiedImageError, OSError (truncated), SyntaxError, bombs, ...
        raise UnreadableFile(where, f"{type(exc).__name__}: {exc}") from None
    if image.width == 0 or image.height == 0:
        raise UnreadableFile(where, f"image has no pixels ({image.width}x{image.height})")
    return image


def _wide_gray_to_u8(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float64)
    if array.size and np.nanmax(array) <= 1.0 and np.nanmin(array) >= 0.0 and array.dtype.kind == "f":
        array = array * 255.0
    elif array.size and np.nanmax(array) > 255.0:
        array = array / 257.0  # 16-bit full range 0..65535 -> 0..255
    return np.clip(np.nan_to_num(array), 0, 255).round().astype(np.uint8)


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any PIL image -> (H, W, 3) uint8 RGB, following the mode rules in the module docstring."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)  # (H, W, 4)
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)  # composite on white
        return rgb.round().astype(np.uint8)
    if mode in _WIDE_GRAY:
        gray = _wide_gray_to_u8(np.asarray(image))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def read_rgb(source: Source, name: str | None = None) -> np.ndarray:
    """A file (path or bytes) -> (H, W, 3) uint8 RGB; `UnreadableFile` if it cannot be decoded."""
    image = open_image(source, name)
    try:
        return to_rgb_array(image)
    except Exception as exc:
        raise UnreadableFile(_name(source, name), f"cannot convert mode {image.mode} to RGB: {exc}") from None


def read_labels(source: Source, name: str | None = None) -> np.ndarray:
    """A label map (single channel, one class index per pixel) -> (H, W) uint8.

    Modes L and P are read as indices (P without applying the palette); wider integer modes are
    accepted when every value fits in 0..255. RGB label maps are refused: their colours are not indices.
    """
    where = _name(source, name)
    image = open_image(source, name)
    if image.mode in ("L", "P"):
        return np.array(image, dtype=np.uint8)
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):
        labels = np.asarray(image)
        if labels.min() < 0 or labels.max() > 255:
            raise UnreadableFile(where, f"label values {labels.min()}..{labels.max()} do not fit in 0..255")
        return labels.astype(np.uint8)
    raise UnreadableFile(where, f"a label map must be single-channel (mode L or P), got mode {image.mode}")


def rgba_to_depth(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 whose four bytes per pixel are one little-endian float32 -> (H, W) float32."""
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"packed depth must be (H, W, 4) uint8, got {rgba.shape} {rgba.dtype}")
    return np.ascontiguousarray(rgba).view("<f4")[..., 0].astype(np.float32)


def depth_to_rgba(depth: np.ndarray) -> np.ndarray:
    """Inverse of `rgba_to_depth`: (H, W) float -> (H, W, 4) uint8, for writing depth PNGs."""
    packed = np.ascontiguousarray(depth, dtype="<f4")
    return packed[..., None].view(np.uint8)


def read_depth(source: Source, name: str | None = None) -> np.ndarray:
    """A depth file -> (H, W) float32. RGBA PNGs hold float32 packed into the four bytes (D-RIN,
    ImageNet depth as the original); F, I and 16-bit images are read as plain values."""
    where = _name(source, name)
    image = open_image(source, name)
    if image.mode == "RGBA":
        depth = rgba_to_depth(np.asarray(image))
    elif image.mode in ("F", "I", "I;16", "I;16B", "I;16L", "L"):
        depth = np.asarray(image).astype(np.float32)
    else:
        raise UnreadableFile(where, f"depth must be an RGBA-packed float32 or single-channel image, got mode {image.mode}")
    if not np.isfinite(depth).all():
        raise UnreadableFile(where, "depth holds NaN or infinite values (wrong packing?)")
    return depth


def normalize_depth(depth: np.ndarray) -> np.ndarray:
    """Min-max to [-1, 1] as the original: (d - min) / max(1e-8, max - min) * 2 - 1."""
    depth = depth.astype(np.float32)
    lo, hi = float(depth.min()), float(depth.max())
    return ((depth - lo) / max(1e-8, hi - lo) * 2.0 - 1.0).astype(np.float32)


def to_float_image(image_u8: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1], the original's x / 127.5 - 1."""
    return (image_u8.astype(np.float32) / 127.5 - 1.0).astype(np.float32)
