"""Where the LPIPS weight files are found. Nothing is ever downloaded.

Two files, both from the user's disk:
- torchvision's ImageNet VGG16 `vgg16-397923af.pth`: an explicit path, else $TAMING_VGG16, else the
  torch hub cache (`torch.hub.get_dir()/checkpoints`, where torchvision puts it);
- the LPIPS v0.1 lin layers `vgg.pth` (the original code called it `vgg_lpips`): an explicit path,
  else $TAMING_LPIPS, else `$XDG_CACHE_HOME/taming/lpips` (default ~/.cache/taming/lpips), else
  `taming/losses/weights/` in this package, else `taming/modules/autoencoder/lpips/` under the
  working directory (where the original code saved its download).

A missing file raises WeightsNotFound naming the file, every place looked at, and where it is
usually obtained.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_ENV = "TAMING_VGG16"
LIN_FILE = "vgg.pth"
LIN_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth"
LIN_ENV = "TAMING_LPIPS"


class WeightsNotFound(FileNotFoundError):
    """A weight file the user must provide is not on disk; the message says where to put it."""


def _as_file(p: Path, name: str) -> Path:
    # An env var or argument may name the file itself or the folder holding it.
    return p / name if p.is_dir() else p


def _search(name: str, what: str, url: str, env: str, explicit, defaults: list[Path]) -> Path:
    looked: list[str] = []
    if explicit:
        candidates = [(_as_file(Path(explicit).expanduser(), name), "given path")]
    else:
        candidates = []
        if os.environ.get(env):
            candidates.append((_as_file(Path(os.environ[env]).expanduser(), name), f"${env}"))
        candidates += [(d / name, "default") for d in defaults]
    for path, why in candidates:
        if path.is_file():
            return path
        looked.append(f"{path} ({why})")
    raise WeightsNotFound(
        f"LPIPS needs {what} '{name}' and it is not on disk. Looked in:\n  " + "\n  ".join(looked)
        + f"\nIt is usually obtained from {url}\nPut it in one of those places, set ${env} to its path,"
          " or train with perceptual_weight: 0 (no LPIPS). Nothing is downloaded automatically.")


def find_vgg16_file(path: str | os.PathLike | None = None) -> Path:
    """torchvision's ImageNet VGG16 weights."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return _search(VGG16_FILE, "torchvision's ImageNet VGG16 weights", VGG16_URL, VGG16_ENV, path, [hub])


def lin_search_dirs() -> list[Path]:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "taming" / "lpips"
    here = Path(__file__).resolve().parent / "weights"
    legacy = Path.cwd() / "taming" / "modules" / "autoencoder" / "lpips"
    return [cache, here, legacy]


def find_lin_file(path: str | os.PathLike | None = None) -> Path:
    """The LPIPS v0.1 linear-layer weights for VGG."""
    return _search(LIN_FILE, "the LPIPS v0.1 lin-layer weights", LIN_URL, LIN_ENV, path, lin_search_dirs())
