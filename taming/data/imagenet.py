"""ImageNet (ILSVRC2012) from local folders only; never downloads.

Layout under `root` (default data/imagenet; the original's cache location
$XDG_CACHE_HOME/autoencoders/data/ILSVRC2012_{train,validation}/data is tried too):
    <root>/train/<wnid>/*.JPEG     <root>/val/<wnid>/*.JPEG   (validation sorted into class folders)
    optional: <root>/<split>/filelist.txt (relative paths; skips the folder scan),
              <root>/synset_human.txt or LOC_synset_mapping.txt ("n01440764 tench, Tinca tinca"),
              <root>/index_synset.yaml ("0: n01440764" ...; needed for sub_indices unless all 1000
              class folders are present, in which case index i is the i-th sorted wnid).
Parameters come in `config` (a dict, as imagenet_vqgan.yaml: {size: 256}) or as keyword arguments:
size (0: keep the file's size), random_crop (train default True), random_flip, sub_indices
("30-32, 33-37": class indices, end exclusive, as the original), root.
Examples: image, file_path_, relpath, synsets, class_label (index of the wnid among those used,
sorted), human_label.
Depth variants (imagenetdepth_vqgan.yaml, drin_transformer.yaml) add "depth" from
<depth_root>/<train|val>/<wnid>/<name>.png (default data/imagenet_depth, as the original).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..config import to_plain
from .base import Forwarding, ImagePaths, read_list_file
from .custom import IMAGE_EXTENSIONS
from .depth import ImageDepthPairs
from .errors import DataError

DEFAULT_ROOT = "data/imagenet"
DEFAULT_DEPTH_ROOT = "data/imagenet_depth"
CONFIG_KEYS = {"size", "random_crop", "random_flip", "sub_indices", "root", "crop_size", "interpolation"}
RIN_SUB_INDICES = "30-32, 33-37, 151-268, 281-285, 80-100, 365-382, 389-397, 118-121, 300-319"


def str_to_indices(text: str) -> list[int]:
    """"1-4, 7" -> [1, 2, 3, 7] (ranges exclude their end, as the original)."""
    indices = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            raise DataError(f"sub_indices {text!r}: empty entry (a trailing comma?)")
        bounds = part.split("-")
        try:
            if len(bounds) == 1:
                indices.append(int(bounds[0]))
            elif len(bounds) == 2:
                indices.extend(range(int(bounds[0]), int(bounds[1])))
            else:
                raise ValueError(part)
        except ValueError:
            raise DataError(f"sub_indices {text!r}: cannot read {part!r} (use 'a-b' or 'n')") from None
    return sorted(indices)


def _cache_root(split: str) -> Path:
    name = {"train": "ILSVRC2012_train", "val": "ILSVRC2012_validation"}[split]
    cache = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    return Path(cache) / "autoencoders" / "data" / name / "data"


def find_split_folder(root: str | None, split: str) -> Path:
    candidates = [Path(root) / split] if root else [Path(DEFAULT_ROOT) / split, _cache_root(split)]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise DataError(f"ImageNet {split} folder not found; looked at {', '.join(str(c.absolute()) for c in candidates)}. "
                    f"Expected <root>/{split}/<wnid>/*.JPEG; nothing is downloaded, set root")


def list_images(folder: Path) -> list[str]:
    """Relative paths <wnid>/<file>: from filelist.txt if present, else by scanning class folders."""
    listed = folder / "filelist.txt"
    if listed.is_file():
        return read_list_file(listed, "ImageNet file list")
    relpaths = []
    for wnid in sorted(os.listdir(folder)):
        sub = folder / wnid
        if sub.is_dir():
            relpaths.extend(f"{wnid}/{name}" for name in sorted(os.listdir(sub))
                            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)
    if not relpaths:
        raise DataError(f"no images in class folders under {folder} (expected <wnid>/*.JPEG; sort a flat "
                        f"validation folder into class folders first, e.g. with the common valprep.sh)")
    return relpaths


def read_human_labels(*folders: Path) -> dict[str, str]:
    for folder in folders:
        for name in ("synset_human.txt", "LOC_synset_mapping.txt"):
            path = folder / name
            if path.is_file():
                return dict(line.split(maxsplit=1) for line in read_list_file(path, "synset names") if " " in line)
    return {}


def index_to_synset(root: Path, folder: Path) -> list[str]:
    path = root / "index_synset.yaml"
    if path.is_file():
        mapping = OmegaConf.to_container(OmegaConf.load(path))
        return [mapping[k] for k in sorted(mapping)]
    wnids = sorted(d for d in os.listdir(folder) if (folder / d).is_dir())
    if len(wnids) == 1000:
        return wnids
    raise DataError(f"sub_indices needs the ImageNet class index -> wnid map: put index_synset.yaml in {root} "
                    f"or use a folder with all 1000 class folders ({folder} has {len(wnids)})")


def select_images(root: str | None, split: str, sub_indices: str | None) -> tuple[Path, Path, list[str]]:
    """(split folder, root, relative paths), restricted to the `sub_indices` classes if given."""
    folder = find_split_folder(root, split)
    root_path = Path(root) if root else folder.parent
    relpaths = list_images(folder)
    if sub_indices is not None:
        synsets = index_to_synset(root_path, folder)  # read once (it was read once per index)
        wanted = set(synsets[i] for i in str_to_indices(sub_indices))
        relpaths = [p for p in relpaths if p.split("/")[0] in wanted]
        if not relpaths:
            raise DataError(f"no images of the sub_indices classes ({sub_indices}) under {folder}")
    return folder, root_path, relpaths


def class_labels(relpaths: list[str]) -> tuple[list[str], list[int]]:
    """wnid of each path and its index among the sorted wnids used."""
    synsets = [p.split("/")[0] for p in relpaths]
    class_of = {s: k for k, s in enumerate(sorted(set(synsets)))}
    return synsets, [class_of[s] for s in synsets]


class ImageNetBase(Forwarding):
    split = "train"
    default_random_crop = True

    def __init__(self, config: Any = None, **kwargs):
        config = dict(to_plain(config) or {})
        config.update({k: v for k, v in kwargs.items() if v is not None})
        if "data_root" in config:  # the original's keyword for the same folder
            config["root"] = config.pop("data_root")
        unknown = set(config) - CONFIG_KEYS
        if unknown:
            raise DataError(f"{type(self).__name__}: unknown config keys {sorted(unknown)} (known: {sorted(CONFIG_KEYS)})")
        self.config = config
        folder, root_path, relpaths = select_images(config.get("root"), self.split, config.get("sub_indices"))
        synsets, labels = class_labels(relpaths)
        human = read_human_labels(root_path, folder)
        self.relpaths, self.folder = relpaths, folder
        self.labels = {
            "relpath": relpaths,
            "synsets": synsets,
            "class_label": labels,
            "human_label": [human.get(s, s) for s in synsets],
        }
        random_crop = config.get("random_crop", self.default_random_crop)
        self.data = ImagePaths([str(folder / p) for p in relpaths], size=config.get("size", 0) or None,
                               random_crop=random_crop, labels=self.labels,
                               random_flip=config.get("random_flip", random_crop),
                               crop_size=config.get("crop_size"), interpolation=config.get("interpolation", "bicubic"),
                               name=type(self).__name__, where=str(folder))


class ImageNetTrain(ImageNetBase):
    split = "train"
    default_random_crop = True


class ImageNetValidation(ImageNetBase):
    split = "val"
    default_random_crop = False


class BaseWithDepth(ImageDepthPairs):
    """ImageNet images of a split plus depth maps at <depth_root>/<train|val>/<wnid>/<name>.png."""

    base = ImageNetTrain

    def __init__(self, config: Any = None, size: int | None = None, random_crop: bool = False,
                 crop_size: int | None = None, root: str | None = None, sub_indices: str | None = None,
                 data_root: str | None = None):
        depth_root = root or DEFAULT_DEPTH_ROOT  # `root` is the depth root, as the original's argument
        config = dict(to_plain(config) or {})
        if sub_indices is not None:
            config["sub_indices"] = sub_indices
        if data_root is not None:
            config["root"] = data_root
        folder, _, relpaths = select_images(config.get("root"), self.base.split, config.get("sub_indices"))
        synsets, labels = class_labels(relpaths)
        depth_split = "train" if self.base.split == "train" else "val"
        super().__init__(
            image_paths=[str(folder / p) for p in relpaths],
            depth_paths=[os.path.join(depth_root, depth_split, os.path.splitext(p)[0] + ".png") for p in relpaths],
            size=size, random_crop=random_crop, crop_size=crop_size,
            labels={"relpath": relpaths, "synsets": synsets, "class_label": labels},
            name=type(self).__name__, where=f"{folder} with depth under {depth_root}/{depth_split}")


class ImageNetTrainWithDepth(BaseWithDepth):
    base = ImageNetTrain

    def __init__(self, random_crop: bool = True, sub_indices: str | None = None, config: Any = None,
                 size: int | None = None, crop_size: int | None = None, root: str | None = None,
                 data_root: str | None = None):
        super().__init__(config=config, size=size, random_crop=random_crop, crop_size=crop_size, root=root,
                         sub_indices=sub_indices, data_root=data_root)


class ImageNetValidationWithDepth(BaseWithDepth):
    base = ImageNetValidation

    def __init__(self, sub_indices: str | None = None, config: Any = None, size: int | None = None,
                 random_crop: bool = False, crop_size: int | None = None, root: str | None = None,
                 data_root: str | None = None):
        super().__init__(config=config, size=size, random_crop=random_crop, crop_size=crop_size, root=root,
                         sub_indices=sub_indices, data_root=data_root)


class RINTrainWithDepth(ImageNetTrainWithDepth):
    """The D-RIN classes (animals) of ImageNet train, with depth (drin_transformer.yaml)."""

    def __init__(self, config: Any = None, size: int | None = None, random_crop: bool = True,
                 crop_size: int | None = None, root: str | None = None, data_root: str | None = None):
        super().__init__(random_crop=random_crop, sub_indices=RIN_SUB_INDICES, config=config, size=size,
                         crop_size=crop_size, root=root, data_root=data_root)


class RINValidationWithDepth(ImageNetValidationWithDepth):
    def __init__(self, config: Any = None, size: int | None = None, random_crop: bool = False,
                 crop_size: int | None = None, root: str | None = None, data_root: str | None = None):
        super().__init__(sub_indices=RIN_SUB_INDICES, config=config, size=size, random_crop=random_crop,
                         crop_size=crop_size, root=root, data_root=data_root)
