"""Where the LPIPS weight files are found (taming/weights: nothing is downloaded unless asked).

Two files, both from the user's disk (or `taming weights fetch vgg16 lpips`):
- torchvision's ImageNet VGG16 `vgg16-397923af.pth`: an explicit path, else $TAMING_VGG16, else the
  `taming weights` cache, else the torch hub cache (`torch.hub.get_dir()/checkpoints`, where torchvision puts it);
- the LPIPS v0.1 lin layers `vgg.pth` (the original code called it `vgg_lpips`): an explicit path,
  else $TAMING_LPIPS, else the `taming weights` cache, else `$XDG_CACHE_HOME/taming/lpips` (default ~/.cache/taming/lpips), else
  `taming/losses/weights/` in this package, else `taming/modules/autoencoder/lpips/` under the
  working directory (where the original code saved its download).

A missing file raises WeightsNotFound naming the file, every place looked at, and the fetch command.
"""
from __future__ import annotations

import os
from pathlib import Path

from taming.weights import files, registry

VGG16_FILE = files.VGG16.files[0]
VGG16_ENV = files.VGG16.env
LIN_FILE = files.LPIPS.files[0]
LIN_ENV = files.LPIPS.env


class WeightsNotFound(registry.WeightsNotFound):
    """A weight file the user must provide is not on disk; the message says where to put it."""


NO_LPIPS = "or train with perceptual_weight: 0 (no LPIPS)"


def find_vgg16_file(path: str | os.PathLike | None = None) -> Path:
    """torchvision's ImageNet VGG16 weights."""
    return registry.find(files.VGG16, path, defaults=registry.hub_checkpoints(), error=WeightsNotFound,
                         hint=NO_LPIPS, flag=None)


def lin_search_dirs() -> list[Path]:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "taming" / "lpips"
    here = Path(__file__).resolve().parent / "weights"
    legacy = Path.cwd() / "taming" / "modules" / "autoencoder" / "lpips"
    return [cache, here, legacy]


def find_lin_file(path: str | os.PathLike | None = None) -> Path:
    """The LPIPS v0.1 linear-layer weights for VGG."""
    return registry.find(files.LPIPS, path, defaults=lin_search_dirs(), error=WeightsNotFound,
                         hint=NO_LPIPS, flag=None)
