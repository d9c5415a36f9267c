"""Where the feature networks' weights come from. Nothing is ever downloaded.

Each network has a standard file, looked for in order: the given path (its command-line flag), its
environment variable, then the torch hub cache (`$TORCH_HOME/hub/checkpoints`, by default
~/.cache/torch/hub/checkpoints) under each of its names. A path may name the file or its folder.

- FID Inception: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, or torch-fidelity's
  `weights-inception-2015-12-05-6726825d.pth` (same layout; one of them carries `num_batches_tracked`
  buffers, which BatchNorm in eval mode does not use). --inception-weights, $TAMING_INCEPTION.
- VGG16 (precision/recall): torchvision's ImageNet VGG16 `vgg16-397923af.pth`, the file torch-fidelity
  loads for its default PRC features; torchvision caches it in the hub folder under that name.
  --vgg16-weights, $TAMING_VGG16.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from taming.checkpoint import load_weights, read_state_dict


class WeightsNotFound(FileNotFoundError):
    """A weight file is not on disk; the message says where it was looked for and where to get it."""


class InceptionWeightsNotFound(WeightsNotFound):
    pass


class VGG16WeightsNotFound(WeightsNotFound):
    pass


@dataclass(frozen=True)
class WeightFile:
    what: str  # "the FID Inception weights"
    files: tuple[str, ...]  # standard names, the preferred first
    flag: str
    env: str
    obtained: str  # where users usually get it, for the error message
    error: type[WeightsNotFound]


FILES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
URLS = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FILES[0],
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + FILES[1])
ENV = "TAMING_INCEPTION"
INCEPTION = WeightFile("the FID Inception weights", FILES, "--inception-weights", ENV,
                       f"{URLS[0]} (pytorch-fid) or {URLS[1]} (torch-fidelity)", InceptionWeightsNotFound)

VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = "https://download.pytorch.org/models/" + VGG16_FILE
VGG16_ENV = "TAMING_VGG16"
VGG16 = WeightFile("the VGG16 weights (torchvision's ImageNet VGG16, torch-fidelity's precision/recall features)",
                   (VGG16_FILE,), "--vgg16-weights", VGG16_ENV,
                   f"{VGG16_URL} (torchvision's download, which fills the same hub cache; fetch it on a machine "
                   "with internet access and copy it here)", VGG16WeightsNotFound)


def _candidates(spec: WeightFile, path) -> list[tuple[Path, str]]:
    def expand(p: Path, why: str) -> list[tuple[Path, str]]:
        return [(p / name, why) for name in spec.files] if p.is_dir() else [(p, why)]

    if path:  # an explicit path is the only place looked at: a typo must not fall back silently
        return expand(Path(path).expanduser(), spec.flag)
    found = expand(Path(os.environ[spec.env]).expanduser(), f"${spec.env}") if os.environ.get(spec.env) else []
    hub = Path(torch.hub.get_dir()) / "checkpoints"  # follows $TORCH_HOME
    return found + [(hub / name, "torch hub cache") for name in spec.files]


def find_weights(spec: WeightFile, path: str | os.PathLike | None = None) -> Path:
    looked = []
    for candidate, why in _candidates(spec, path):
        if candidate.is_file():
            return candidate
        looked.append(f"{candidate} ({why})")
    names = f"'{spec.files[0]}'" + "".join(f" (or '{name}')" for name in spec.files[1:])
    raise spec.error(
        f"{spec.what} {names} are not on disk. Looked in: " + "; ".join(looked) + f". They are usually "
        f"obtained from {spec.obtained}; pass {spec.flag} FILE or set ${spec.env}. Nothing is downloaded "
        "automatically.")


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    return find_weights(INCEPTION, path)


def read_inception_state_dict(net: nn.Module, path: str | os.PathLike | None = None) -> Path:
    """Load the weights into `net` strictly; `num_batches_tracked` buffers are optional in the file."""
    file = find_inception_weights(path)
    sd = read_state_dict(file)
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            sd.setdefault(key, value)
    load_weights(net, sd, source=str(file))
    return file
