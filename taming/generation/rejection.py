"""Rejection sampling (the paper's ImageNet results): per class draw ceil(n / rate) candidates and keep
the n that a classifier finds most likely to show their class.

The classifier sees exactly the pixels written to disk: uint8-range float images (B, 3, H, W) in
[0, 255], and returns logits (B, K) (or a dict holding "logits"). `class_map[c]` is the logit that
stands for the model's class c.
The classifier is passed in (`Classifier`); `taming.eval.classifier.load_classifier` makes one:
- Default: the FID Inception network (`taming.eval.inception.load_inception`, from a local weight
  file). Its 1008 logits are the 2015 TensorFlow graph's outputs, whose classes are NOT in ImageNet
  class-index order: the default map sends ImageNet class c (sorted WordNet ids, n01440764 = 0, the
  order of the original's ImageNet data) to the graph's logit for that synset
  (taming.eval.inception_classes, e.g. 0 "tench" -> 449). Models whose classes follow another order
  pass --class-map with the logit index of each class.
- --classifier FILE: any TorchScript (torch.jit.save) or torch.export (.pt2) module with that
  interface; the default map is the identity.
Candidates go to OUTDIR/candidates/<class>/ first (resumable like the samples), are scored from the
files, and the kept ones are renamed into samples/<class>/ (000000.png ... in candidate order);
OUTDIR/rejection/<class>.json records every candidate's score and which were kept.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from taming.generation.runs import LoadedRun
from taming.config import ConfigError
from taming.images import channels_first
from taming.generation.files import image_name, save_json
from taming.generation.drawing import SamplingSpec
from taming.generation.samples import SAMPLES, Item, Written, batches, write_samples

CANDIDATES, RECORDS = "candidates", "rejection"


@dataclass
class Classifier:
    net: Callable[[torch.Tensor], object]  # (B, 3, H, W) floats in [0, 255] -> logits (B, K) or {"logits": ...}
    class_map: Callable[[int], int]  # model class -> logit index
    name: str
    device: torch.device
    map_name: str = "identity"  # how class_map was made, for the settings JSON

    @torch.no_grad()
    def log_probs(self, pixels: np.ndarray, labels: Sequence[int]) -> torch.Tensor:
        """(B, H, W, 3) uint8 and their classes -> log p(class | image) (B,)."""
        x = channels_first(pixels).to(self.device)
        out = self.net(x)
        logits = out["logits"] if isinstance(out, dict) else out
        index = torch.tensor([self.class_map(c) for c in labels], device=logits.device)
        if int(index.max()) >= logits.shape[1] or int(index.min()) < 0:
            raise ConfigError(f"classifier {self.name}: class index {int(index.max())} is outside its "
                              f"{logits.shape[1]} logits (check --class-map)")
        return logits.float().log_softmax(-1).gather(1, index[:, None])[:, 0].cpu()


def candidate_count(n: int, rate: float) -> int:
    """Candidates per class for n kept at acceptance rate `rate` in (0, 1]."""
    if not 0 < rate <= 1:
        raise ConfigError(f"--accept-rate {rate}: must be in (0, 1]")
    return math.ceil(n / rate - 1e-9)


def read_pixels(paths: Sequence[Path]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def sample_class(run: LoadedRun, label: int, n: int, rate: float, out: Path, spec: SamplingSpec,
                 seed: int, batch_size: int, classifier: Classifier, written: Written | None = None) -> dict:
    """Rejection-sample n images of `label` into samples/<label>/ -> its record (scores, kept)."""
    final = out / SAMPLES / str(label)
    record_path = out / RECORDS / f"{label}.json"
    count = candidate_count(n, rate)
    if record_path.is_file() and all((final / image_name(i)).is_file() for i in range(n)):
        record = json.loads(record_path.read_text())
        if record["candidates"] == count and len(record["kept"]) == n:
            return record  # done in an earlier run with these settings
    folder = out / CANDIDATES / str(label)
    items = [Item(label, j, folder / image_name(j)) for j in range(count)]
    write_samples(run, items, spec, seed, batch_size, written)
    scores: list[float] = []
    for batch in batches(items, batch_size):
        scores += classifier.log_probs(read_pixels([it.path for it in batch]), [label] * len(batch)).tolist()
    ranked = sorted(range(count), key=lambda j: (-scores[j], j))
    kept = sorted(ranked[:n])
    record = {"class": label, "candidates": count, "kept": kept, "acceptance_rate": n / count,
              "log_prob": scores, "classifier": classifier.name}
    save_json(record, record_path)
    final.mkdir(parents=True, exist_ok=True)
    for i, j in enumerate(kept):
        os.replace(items[j].path, final / image_name(i))
    shutil.rmtree(folder)
    return record


def acceptance_summary(records: Sequence[dict]) -> dict:
    kept = sum(len(r["kept"]) for r in records)
    candidates = sum(r["candidates"] for r in records)
    return {"candidates": candidates, "kept": kept, "acceptance_rate": kept / candidates if candidates else None}
