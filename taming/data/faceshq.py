"""FFHQ, CelebA-HQ and FacesHQ (both together, class 0 = CelebA-HQ, 1 = FFHQ), as the original.

FFHQ: PNGs under `root` (default data/ffhq, as the original README links it), either flat
(data/ffhq/52535.png) or in the official layout of 1000 per subfolder (data/ffhq/52000/52535.png);
each file is looked up in both.
CelebA-HQ: .npy files of (1, 3, 1024, 1024) uint8 under `root` (default data/celebahq).
Split lists: the official files (one name per line: "52535.png", "imgHQ20126.npy"), read from
`split_file`; by default the original's data/ffhqtrain.txt (data/ffhqvalidation.txt,
data/celebahqtrain.txt, data/celebahqvalidation.txt), else the same name inside `root`, else the
official lists that ship with taming (taming/data/splits/, the original repository's data/ files).
Examples: {"image": (size, size, 3) float32 in [-1, 1], "file_path_"} (centre crop after resizing the
smaller side); FacesHQ adds "class" (and "class_label", the same int) and, with coord=True, "coord"
(crop_size, crop_size, 1), and crops `crop_size` (random for training, centre for validation).
"""
from __future__ import annotations

import os

from .base import ConcatDatasetWithIndex, Forwarding, ImagePaths, NumpyPaths, read_list_file
from .coord import coord_map
from .errors import DataError
from .transforms import PairedTransform


SPLITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "splits")  # the official lists, shipped


def _split_list(split_file: str | None, default_name: str, root: str) -> tuple[list[str], str]:
    candidates = [split_file] if split_file else [os.path.join("data", default_name), os.path.join(root, default_name),
                                                  os.path.join(SPLITS, default_name)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return read_list_file(candidate, "split list"), candidate
    raise DataError(f"split list {default_name} not found; looked at {', '.join(map(os.path.abspath, candidates))} "
                    f"(set split_file to a list of file names, one per line)")


def ffhq_path(root: str, name: str) -> str:
    """Flat layout if that file exists, else the official 1000-per-folder layout (52535 -> 52000/)."""
    flat = os.path.join(root, name)
    if os.path.isfile(flat):
        return flat
    stem = os.path.splitext(os.path.basename(name))[0]
    folder = f"{(int(stem) // 1000) * 1000:05d}" if stem.isdigit() else ""
    return os.path.join(root, folder, name)


class FacesBase(Forwarding):
    """Holds `self.data`; `keys` keeps only those keys of each example (as the original)."""

    keys = None

    def __getitem__(self, i: int) -> dict:
        example = self.data[i]
        return example if self.keys is None else {k: v for k, v in example.items() if k in self.keys}


class CelebAHQTrain(FacesBase):
    split_name = "celebahqtrain.txt"

    def __init__(self, size: int, keys=None, root: str = "data/celebahq", split_file: str | None = None):
        names, listed = _split_list(split_file, self.split_name, root)
        self.keys = keys
        self.data = NumpyPaths([os.path.join(root, n) for n in names], size=size, random_crop=False,
                               name=type(self).__name__, where=f"{root} (names from {listed})")


class CelebAHQValidation(CelebAHQTrain):
    split_name = "celebahqvalidation.txt"


class FFHQTrain(FacesBase):
    split_name = "ffhqtrain.txt"

    def __init__(self, size: int, keys=None, root: str = "data/ffhq", split_file: str | None = None):
        names, listed = _split_list(split_file, self.split_name, root)
        self.keys = keys
        self.data = ImagePaths([ffhq_path(root, n) for n in names], size=size, random_crop=False,
                               name=type(self).__name__,
                               where=f"{root} (flat or 1000-per-folder; names from {listed})")


class FFHQValidation(FFHQTrain):
    split_name = "ffhqvalidation.txt"


class FacesHQTrain(Forwarding):
    """CelebA-HQ (class 0) then FFHQ (class 1); random `crop_size` crop; optional coord."""

    random_crop = True
    parts = (CelebAHQTrain, FFHQTrain)

    def __init__(self, size: int, keys=None, crop_size: int | None = None, coord: bool = False,
                 celebahq_root: str = "data/celebahq", ffhq_root: str = "data/ffhq",
                 celebahq_split_file: str | None = None, ffhq_split_file: str | None = None):
        celeba, ffhq = self.parts
        self.data = ConcatDatasetWithIndex([
            celeba(size=size, keys=keys, root=celebahq_root, split_file=celebahq_split_file),
            ffhq(size=size, keys=keys, root=ffhq_root, split_file=ffhq_split_file),
        ])
        self.coord = coord
        self.cropper = PairedTransform(crop_size=crop_size, random_crop=self.random_crop) if crop_size else None

    def __getitem__(self, i: int) -> dict:
        example, label = self.data[i]
        example = dict(example)
        maps = {"coord": coord_map(*example["image"].shape[:2])} if self.coord else {}
        example.update(self.cropper(example["image"], **maps) if self.cropper is not None else maps)
        example["class"] = example["class_label"] = label
        return example


class FacesHQValidation(FacesHQTrain):
    random_crop = False
    parts = (CelebAHQValidation, FFHQValidation)
