"""Where the FID Inception weights come from. Nothing is ever downloaded.

The file is the standard one: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, or torch-fidelity's
`weights-inception-2015-12-05-6726825d.pth` (same layout; one of them carries `num_batches_tracked`
buffers, which BatchNorm in eval mode does not use). Looked for, in order: the given path
(`--inception-weights`), $TAMING_INCEPTION, then the torch hub cache (`$TORCH_HOME/hub/checkpoints`, by
default ~/.cache/torch/hub/checkpoints) under either name. A path may name the file or its folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from taming.checkpoint import load_weights, read_state_dict

FILES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
URLS = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FILES[0],
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + FILES[1])
ENV = "TAMING_INCEPTION"


class InceptionWeightsNotFound(FileNotFoundError):
    """The Inception weight file is not on disk; the message says where it was looked for and where to get it."""


def _candidates(path) -> list[tuple[Path, str]]:
    def expand(p: Path, why: str) -> list[tuple[Path, str]]:
        return [(p / name, why) for name in FILES] if p.is_dir() else [(p, why)]

    if path:  # an explicit path is the only place looked at: a typo must not fall back silently
        return expand(Path(path).expanduser(), "--inception-weights")
    found = expand(Path(os.environ[ENV]).expanduser(), f"${ENV}") if os.environ.get(ENV) else []
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return found + [(hub / name, "torch hub cache") for name in FILES]


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    looked = []
    for candidate, why in _candidates(path):
        if candidate.is_file():
            return candidate
        looked.append(f"{candidate} ({why})")
    raise InceptionWeightsNotFound(
        f"the FID Inception weights '{FILES[0]}' (or '{FILES[1]}') are not on disk. Looked in: "
        + "; ".join(looked) + f". They are usually obtained from {URLS[0]} (pytorch-fid) or {URLS[1]} "
        f"(torch-fidelity); pass --inception-weights FILE or set ${ENV}. Nothing is downloaded automatically.")


def read_inception_state_dict(net: nn.Module, path: str | os.PathLike | None = None) -> Path:
    """Load the weights into `net` strictly; `num_batches_tracked` buffers are optional in the file."""
    file = find_inception_weights(path)
    sd = read_state_dict(file)
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            sd.setdefault(key, value)
    load_weights(net, sd, source=str(file))
    return file
