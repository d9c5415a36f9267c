"""Which of the FID Inception network's 1008 logits stands for each ImageNet class.

The 2015-12-05 TensorFlow Inception graph (the FID network) does not order its classes like the usual
ImageNet class index (the 1000 WordNet ids sorted, n01440764 "tench" = class 0 ... n15075141 = 999,
which taming.data.imagenet also uses). Its order is given by the label map shipped with the graph,
`imagenet_2012_challenge_label_map_proto.pbtxt` (`target_class: K  target_class_string: "nXXXXXXXX"`),
whose target classes are the ILSVRC2012 devkit ids (devkit data/map_clsloc.txt, "n02119789 1 kit_fox");
logit 0 is "background" and 1001..1007 are unused.

data/inception2015_imagenet_logits.txt holds that table: line c (0-based) is ImageNet class c, as
"synset logit name". Checked against the label map's entries and the standard class index (see
tests/test_eval_inception_classes.py).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

TABLE = "inception2015_imagenet_logits.txt"
NUM_CLASSES = 1000


@lru_cache(maxsize=1)
def _rows() -> tuple[tuple[str, int, str], ...]:
    text = resources.files("taming.eval").joinpath("data", TABLE).read_text()
    rows = tuple((s, int(k), name) for s, k, name in (line.split() for line in text.splitlines() if line.strip()))
    if len(rows) != NUM_CLASSES:  # a damaged install, not a user error
        raise RuntimeError(f"taming/eval/data/{TABLE}: {len(rows)} rows, expected {NUM_CLASSES}")
    return rows


def imagenet_synsets() -> list[str]:
    """The WordNet id of each ImageNet class, in class-index order (sorted)."""
    return [s for s, _, _ in _rows()]


def inception_logits() -> list[int]:
    """logits[c]: the FID Inception network's logit index (1..1000) for ImageNet class c."""
    return [k for _, k, _ in _rows()]
