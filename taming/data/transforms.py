"""Resize, crop and flip for images and their aligned maps, with PIL + numpy only.

Training: resize so the smaller side is `size`, a random `crop_size` window, a random horizontal flip.
Evaluation: the same resize and the centre window, no flip. The image, its label map, depth and coord
always share one window and one flip. Label maps resize with NEAREST (class indices must not blend),
depth and coord bilinearly on float values (no overshoot out of [-1, 1] / [0, 1]).

Randomness comes from Python's `random` (or a given `random.Random`): PyTorch seeds it differently in
every DataLoader worker, so workers do not repeat each other's crops (numpy's global state is not
reseeded per worker).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .errors import DataError

FILTERS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "area": Image.BOX,  # PIL's box filter is the area average cv2.INTER_AREA computes
    "box": Image.BOX,
    "lanczos": Image.LANCZOS,
    "hamming": Image.HAMMING,
}


def get_filter(name: str) -> int:
    try:
        return FILTERS[name]
    except KeyError:
        raise DataError(f"interpolation {name!r} unknown; use one of {sorted(FILTERS)}") from None


def smaller_side_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """(H, W) after scaling so that min(H, W) == size, keeping the aspect ratio."""
    scale = size / min(h, w)
    return max(size, int(round(h * scale))), max(size, int(round(w * scale)))


def resize_array(array: np.ndarray, shape: tuple[int, int], interpolation: str = "bicubic") -> np.ndarray:
    """Resize (H, W), (H, W, 1) or (H, W, 3) arrays to `shape` (H', W').

    uint8 images use PIL's 8-bit path; float maps are resized per channel in mode F. Label maps
    should pass interpolation="nearest".
    """
    h, w = shape
    if array.shape[:2] == (h, w):
        return array
    resample = get_filter(interpolation)
    if array.dtype == np.uint8 and (array.ndim == 2 or array.shape[2] in (3, 4)):
        return np.asarray(Image.fromarray(array).resize((w, h), resample=resample))
    planes = array[..., None] if array.ndim == 2 else array
    out = np.stack(
        [np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., k], dtype=np.float32), mode="F")
                    .resize((w, h), resample=resample)) for k in range(planes.shape[2])],
        axis=2,
    ).astype(array.dtype)
    return out[..., 0] if array.ndim == 2 else out


CROP_ANCHORS = ("center", "top_left")


def crop_window(h: int, w: int, crop_h: int, crop_w: int, rng: random.Random | None,
                anchor: str = "center") -> tuple[int, int]:
    """Top-left corner of a crop: uniform when `rng` is given, else the centre (as albumentations)
    or the top-left corner (anchor="top_left", the S-FLCKR benchmark recipe's validation crop)."""
    if rng is not None:
        return rng.randint(0, h - crop_h), rng.randint(0, w - crop_w)
    if anchor == "top_left":
        return 0, 0
    return (h - crop_h) // 2, (w - crop_w) // 2


@dataclass
class PairedTransform:
    """Resize smaller side -> crop -> flip, applied identically to an image and its aligned maps.

    size:        smaller side after resizing (None or <= 0: keep the file's size).
    crop_size:   side of the square crop (None: `size`; None and no size: no crop). An int or (h, w).
    random_crop: random window (training) or a fixed window (evaluation) at `crop_anchor`
                 ("center", as the original, or "top_left").
    random_flip: horizontal flip with probability 0.5.
    If an image is smaller than the crop after resizing, it is scaled up to cover the crop (so tiny
    images train instead of crashing the run); `upscaled` counts every image that was enlarged.
    """

    size: int | None = None
    crop_size: int | tuple[int, int] | None = None
    random_crop: bool = False
    random_flip: bool = False
    interpolation: str = "bicubic"
    crop_anchor: str = "center"
    upscaled: int = field(default=0, init=False)

    def __post_init__(self):
        if self.size is not None and self.size <= 0:
            self.size = None
        if self.crop_size is None and self.size is not None:
            self.crop_size = self.size
        if isinstance(self.crop_size, int):
            self.crop_size = (self.crop_size, self.crop_size)
        get_filter(self.interpolation)
        if self.crop_anchor not in CROP_ANCHORS:
            raise DataError(f"crop_anchor {self.crop_anchor!r} unknown; use one of {CROP_ANCHORS}")

    def target_shape(self, h: int, w: int) -> tuple[int, int]:
        """(H, W) of the resized image before cropping, upscaled if it is smaller than the crop.
        Counts in `upscaled` every image that had to be enlarged (it trains blurrier than the rest)."""
        th, tw = (h, w) if self.size is None else smaller_side_shape(h, w, self.size)
        if self.crop_size is not None:
            ch, cw = self.crop_size
            if th < ch or tw < cw:
                scale = max(ch / th, cw / tw)
                th, tw = max(ch, int(round(th * scale))), max(cw, int(round(tw * scale)))
        if th > h or tw > w:
            self.upscaled += 1
        return th, tw

    def __call__(self, image: np.ndarray, rng: random.Random | None = None, **maps: np.ndarray | None) -> dict:
        """image: (H, W, C). maps: name -> (H, W[, C]) array or None; names containing "segmentation"
        or "label" are index maps (nearest), other maps (depth, coord) resize bilinearly, which never
        overshoots their value range. Returns a dict with "image" and every non-None map."""
        rng = rng if rng is not None else random
        h, w = image.shape[:2]
        th, tw = self.target_shape(h, w)
        out = {"image": resize_array(image, (th, tw), self.interpolation)}
        for name, value in maps.items():
            if value is None:
                continue
            if value.shape[:2] != (h, w):
                raise DataError(f"{name} is {value.shape[:2]} but its image is {(h, w)}; they must align")
            nearest = "segmentation" in name or "label" in name
            out[name] = resize_array(value, (th, tw), "nearest" if nearest else "bilinear")
        if self.crop_size is not None:
            ch, cw = self.crop_size
            top, left = crop_window(th, tw, ch, cw, rng if self.random_crop else None, self.crop_anchor)
            out = {k: v[top:top + ch, left:left + cw] for k, v in out.items()}
        if self.random_flip and rng.random() < 0.5:
            out = {k: v[:, ::-1] for k, v in out.items()}
        return {k: np.ascontiguousarray(v) for k, v in out.items()}
