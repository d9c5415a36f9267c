"""The feature networks' weight files, found where taming/weights/registry.py looks (the torch hub
cache last); nothing is downloaded unless asked (`taming weights fetch inception vgg16`).

- FID Inception: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, or torch-fidelity's
  `weights-inception-2015-12-05-6726825d.pth` (same layout; one of them carries `num_batches_tracked`
  buffers, which BatchNorm in eval mode does not use). --inception-weights, $TAMING_INCEPTION.
- VGG16 (precision/recall): torchvision's ImageNet VGG16 `vgg16-397923af.pth`, the file torch-fidelity
  loads for its default PRC features. --vgg16-weights, $TAMING_VGG16.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from taming.checkpoint import load_weights, read_state_dict
from taming.weights import files, registry
from taming.weights.locate import find


class WeightsNotFound(registry.WeightsNotFound):
    """A weight file is not on disk; the message says where it was looked for and how to fetch it."""


class InceptionWeightsNotFound(WeightsNotFound):
    pass


class VGG16WeightsNotFound(WeightsNotFound):
    pass


@dataclass(frozen=True)
class WeightFile:
    spec: registry.WeightFile  # the registry entry: names, URLs, variable, flag, checksum
    error: type[WeightsNotFound]


FILES = files.INCEPTION.files
ENV = files.INCEPTION.env
INCEPTION = WeightFile(files.INCEPTION, InceptionWeightsNotFound)

VGG16_FILE = files.VGG16.files[0]
VGG16_ENV = files.VGG16.env
VGG16 = WeightFile(files.VGG16, VGG16WeightsNotFound)


def find_weights(spec: WeightFile, path: str | os.PathLike | None = None) -> Path:
    return find(spec.spec, path, error=spec.error)


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    return find_weights(INCEPTION, path)


def read_inception_state_dict(net: nn.Module, path: str | os.PathLike | None = None) -> Path:
    """Load the weights into `net` strictly; `num_batches_tracked` buffers are optional in the file."""
    file = find_inception_weights(path)
    load_weights(net, read_state_dict(file), source=str(file), counters_optional=True)
    return file
