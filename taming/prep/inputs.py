"""What to extract maps for: (image file, output path relative to OUT) pairs from an image folder,
a file list, or a dataset config split.

Output paths mirror the input's relative path with `.png`, which is the layout every map dataset
reads: `images/<wnid>/<name>.JPEG` -> `depth/<wnid>/<name>.png` (D-RIN, ImageNet depth under
`<depth_root>/<train|val>/`), `images/<group>/<name>.jpg` -> `segmentations/<group>/<name>.png`
(S-FLCKR, the COCO-Stuff and ADE20K example lists).
- folder: every image below it (recursive, sorted), relative to it;
- file list (any other file): one path per line, relative to `root` (default: the list's folder),
  as the datasets' example lists (`examples.txt`) are written;
- config (.yaml): the dataset `data.params.<split>` builds, its files and relative paths (`relpath`
  or `relative_file_path_` where it keeps them, else the path below the files' common folder).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from taming.data.base import read_list_file
from taming.data.custom import find_images
from taming.data.errors import DataError


@dataclass(frozen=True)
class Item:
    image: str  # the image file
    out: str  # the map's path relative to the output folder (posix, .png)


def map_name(relpath: str) -> str:
    return str(PurePosixPath(relpath.replace(os.sep, "/")).with_suffix(".png"))


def from_folder(folder: str | os.PathLike) -> list[Item]:
    return [Item(path, map_name(os.path.relpath(path, folder))) for path in find_images(folder)]


def from_list(list_file: str | os.PathLike, root: str | os.PathLike | None = None) -> list[Item]:
    root = Path(root) if root is not None else Path(list_file).parent
    items = []
    for line in read_list_file(list_file, "image list"):
        if os.path.isabs(line):
            raise DataError(f"{list_file}: {line!r} is absolute; list paths relative to --root "
                            f"({root}), so that the maps mirror them")
        items.append(Item(str(root / line), map_name(line)))
    if not items:
        raise DataError(f"{list_file}: no image paths listed")
    return items


def dataset_files(dataset: Any) -> tuple[list[str], list[str] | None]:
    """(files, their relative paths or None) of a built dataset, looking through the wrappers the
    project's datasets use (`.data`, concatenations)."""
    labels = getattr(dataset, "labels", None)
    if isinstance(labels, dict) and "file_path_" in labels:
        rel = labels.get("relpath", labels.get("relative_file_path_"))
        return list(labels["file_path_"]), list(rel) if rel is not None else None
    parts = getattr(dataset, "datasets", None)
    if parts is not None:
        found = [dataset_files(part) for part in parts]
        files = [f for fs, _ in found for f in fs]
        rels = None if any(r is None for _, r in found) else [r for _, rs in found for r in rs]
        return files, rels
    inner = getattr(dataset, "data", None)
    if inner is not None and inner is not dataset:
        return dataset_files(inner)
    raise DataError(f"{type(dataset).__name__} does not say which image files it reads; "
                    "pass the image folder or a file list instead")


def from_config(config_paths: Sequence[str], split: str, overrides: Sequence[str] = ()) -> list[Item]:
    from taming.config import ConfigError, instantiate_from_config, load_configs

    config = load_configs(list(config_paths), list(overrides))
    node = config.get("data", {}).get("params", {}).get(split)
    if node is None:
        raise ConfigError(f"{', '.join(config_paths)}: no data.params.{split} (the dataset split to extract)")
    files, rels = dataset_files(instantiate_from_config(node, where=f"data.params.{split}"))
    if rels is None:
        base = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
        rels = [os.path.relpath(os.path.abspath(f), base) for f in files]
    return [Item(f, map_name(r)) for f, r in zip(files, rels)]


def collect(source: str, root: str | None = None, split: str | None = None,
            overrides: Sequence[str] = ()) -> list[Item]:
    """Items of a folder, a list file or a config (by what `source` is), checked for clashes."""
    path = Path(source)
    if path.is_dir():
        items = from_folder(path)
    elif path.suffix.lower() in (".yaml", ".yml"):
        items = from_config([source], split or "train", overrides)
    elif path.is_file():
        items = from_list(path, root)
    else:
        raise DataError(f"no such image folder, image list or config: {source} (absolute: {path.resolve()})")
    seen: dict[str, str] = {}
    for item in items:
        if item.out in seen:
            raise DataError(f"{seen[item.out]} and {item.image} would both write {item.out}")
        seen[item.out] = item.image
    return items
