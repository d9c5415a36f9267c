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
from taming.weights.locate import find

VGG16_ENV = files.VGG16.env
LIN_ENV = files.LPIPS.env


class WeightsNotFound(registry.WeightsNotFound):
    """A weight file the user must provide is not on disk; the message says where to put it."""


NO_LPIPS = "or train with perceptual_weight: 0 (no LPIPS)"


def find_vgg16_file(path: str | os.PathLike | None = None) -> Path:
    """torchvision's ImageNet VGG16 weights."""
    return find(files.VGG16, path, defaults=registry.hub_checkpoints(), error=WeightsNotFound,
                         hint=NO_LPIPS, flag=None)


lin_search_dirs = files.lpips_places  # a name of this module, so that tests can point it elsewhere


def find_lin_file(path: str | os.PathLike | None = None) -> Path:
    """The LPIPS v0.1 linear-layer weights for VGG."""
    return find(files.LPIPS, path, defaults=lin_search_dirs(), error=WeightsNotFound,
                         hint=NO_LPIPS, flag=None)
