"""A user's own images: list files (custom_vqgan.yaml) or a folder searched recursively.

    train: {target: taming.data.custom.CustomTrain, params: {training_images_list_file: train.txt, size: 256}}
    validation: {target: taming.data.custom.CustomTest, params: {test_images_list_file: test.txt, size: 256}}

A list file holds one image path per line (absolute, or relative to the working directory as in the
original; relative to `root` when given). Training uses a random crop and flip (the original
centre-cropped even for training: pass random_crop=False, random_flip=False to get that back);
testing uses the centre crop. Examples: {"image": (size, size, 3) float32 in [-1, 1], "file_path_"}.
"""
from __future__ import annotations

import os
from pathlib import Path

from .base import Forwarding, ImagePaths, read_list_file
from .errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


class CustomBase(Forwarding):
    """Holds `self.data` (an `ImagePaths`) and forwards to it, as the original."""


def _paths_from_list(list_file: str, root: str | None) -> list[str]:
    lines = read_list_file(list_file, "image list file")
    return [os.path.join(root, line) if root else line for line in lines]


class CustomTrain(CustomBase):
    def __init__(self, size: int, training_images_list_file: str, random_crop: bool = True,
                 random_flip: bool = True, crop_size: int | None = None, root: str | None = None,
                 interpolation: str = "bicubic"):
        paths = _paths_from_list(training_images_list_file, root)
        self.data = ImagePaths(paths, size=size, random_crop=random_crop, crop_size=crop_size,
                               random_flip=random_flip, interpolation=interpolation, name="CustomTrain",
                               where=f"{training_images_list_file} (paths relative to {root or os.getcwd()})")


class CustomTest(CustomBase):
    def __init__(self, size: int, test_images_list_file: str, crop_size: int | None = None,
                 root: str | None = None, interpolation: str = "bicubic"):
        paths = _paths_from_list(test_images_list_file, root)
        self.data = ImagePaths(paths, size=size, random_crop=False, crop_size=crop_size, random_flip=False,
                               interpolation=interpolation, name="CustomTest",
                               where=f"{test_images_list_file} (paths relative to {root or os.getcwd()})")


def find_images(folder: str | os.PathLike, extensions=IMAGE_EXTENSIONS) -> list[str]:
    """Image files under `folder` (recursive, sorted, by extension, case-insensitive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder} (absolute: {folder.resolve()})")
    found = sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    if not found:
        raise DataError(f"no image files ({', '.join(extensions)}) under {folder.resolve()}")
    return found


class ImageFolder(CustomBase):
    """Every image under `root` (recursive, sorted by path). `split`: "train" (random crop + flip)
    or "validation"/"test" (fixed crop at `crop_anchor`: "center" or "top_left"). `start`/`stop`
    slice the sorted list, e.g. the S-FLCKR benchmark recipe: the first 20 files train (stop=20),
    the last 5 validate (start=20, size=128, crop_size=128, crop_anchor=top_left)."""

    def __init__(self, root: str, size: int = 256, crop_size: int | None = None, split: str = "train",
                 random_crop: bool | None = None, random_flip: bool | None = None,
                 interpolation: str = "bicubic", start: int = 0, stop: int | None = None,
                 crop_anchor: str = "center"):
        if split not in ("train", "validation", "test"):
            raise DataError(f"ImageFolder split must be train, validation or test, got {split!r}")
        train = split == "train"
        paths = find_images(root)[start:stop]
        if not paths:
            raise DataError(f"ImageFolder: slice [{start}:{stop}] of the images under {root} is empty")
        self.data = ImagePaths(paths, size=size, crop_size=crop_size,
                               random_crop=train if random_crop is None else random_crop,
                               random_flip=train if random_flip is None else random_flip,
                               interpolation=interpolation, crop_anchor=crop_anchor,
                               name=f"ImageFolder({root})", where=str(root))
