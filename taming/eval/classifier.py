"""The classifier of rejection sampling (taming.generation.rejection): the FID Inception network with
ImageNet's class order mapped onto its logits, or a TorchScript / torch.export file, with an optional
--class-map file of logit indices (see taming/generation/rejection.py for the interface)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import torch

from taming.config import ConfigError
from taming.eval import inception  # reads a local weight file only
from taming.eval.inception_classes import TABLE, inception_logits
from taming.generation.rejection import Classifier

INCEPTION_CLASSIFIER = "Inception (FID network) logits"
DEFAULT_MAP = "ImageNet class index -> the Inception graph's logit for that synset"


def read_class_map(path: str | None) -> list[int] | None:
    """A file of logit indices, one per model class (line c, or a JSON list)."""
    if path is None:
        return None
    text = Path(path).read_text()
    try:
        values = json.loads(text) if text.lstrip().startswith("[") else [int(v) for v in text.split()]
        return [int(v) for v in values]
    except ValueError:
        raise ConfigError(f"--class-map {path}: expected one integer per line (or a JSON list)") from None


def load_classifier(path: str | None, class_map: str | None, device: torch.device,
                    inception_weights: str | None = None) -> Classifier:
    table = read_class_map(class_map)
    if path is None:
        net = inception.load_inception(inception_weights, device=device)
        name, default = INCEPTION_CLASSIFIER, _table_map(inception_logits(), DEFAULT_MAP)
        default_name = f"{DEFAULT_MAP} ({TABLE})"
    else:
        if not Path(path).is_file():
            raise FileNotFoundError(f"classifier file not found: {path}")
        try:
            net = torch.export.load(path).module() if str(path).endswith(".pt2") else torch.jit.load(path, map_location=device)
        except Exception as exc:
            raise ConfigError(f"--classifier {path}: not a TorchScript or torch.export file ({type(exc).__name__}: "
                              f"{exc})") from None
        name, default, default_name = str(path), (lambda c: c), "identity"
    if table is not None:
        return Classifier(net, _table_map(table, f"--class-map {class_map}"), name, device, str(class_map))
    return Classifier(net, default, name, device, default_name)


def _table_map(table: Sequence[int], what: str) -> Callable[[int], int]:
    def mapped(c: int) -> int:
        if not 0 <= c < len(table):
            raise ConfigError(f"{what}: no entry for class {c} ({len(table)} entries)")
        return table[c]
    return mapped
