"""The two LPIPS weight files, found where taming/weights/registry.py looks; nothing is downloaded
unless asked (`taming weights fetch vgg16 lpips`): torchvision's ImageNet VGG16 `vgg16-397923af.pth`
(also in the torch hub cache), and the LPIPS v0.1 lin layers `vgg.pth` (the original code's
`vgg_lpips`; also where the original and earlier versions put it: taming.weights.files.lpips_places).
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
