"""The ImageNet class -> FID Inception logit table, and rejection sampling's use of it."""
import re

import numpy as np
import pytest
import torch

from taming.config import ConfigError
from taming.eval import classifier, inception_classes

# Entries of the graph's label map, imagenet_2012_challenge_label_map_proto.pbtxt ("target_class: K,
# target_class_string: nXXXXXXXX"), read from three places of the file: its start, middle and end.
LABEL_MAP_ENTRIES = {
    "n01440764": 449, "n01443537": 450,
    "n02259212": 637, "n02264363": 638, "n02268443": 639, "n02268853": 640, "n02276258": 641, "n02277742": 642,
    "n02279972": 643, "n02280649": 644, "n02281406": 645, "n02281787": 646, "n02317335": 225, "n02319095": 657,
    "n02321529": 658, "n02325366": 188, "n02326432": 129, "n02328150": 164, "n02342885": 157, "n02346627": 13,
    "n02356798": 53, "n02361337": 183,
    "n07718472": 743, "n07718747": 744, "n07720875": 735, "n07730033": 745, "n07734744": 746, "n07742313": 318,
    "n07745940": 229, "n07747607": 319, "n07749582": 320, "n07753113": 321, "n07753275": 322, "n07753592": 323,
    "n07754684": 324, "n07760859": 325, "n07768694": 326, "n07802026": 816, "n07831146": 999, "n07836838": 953,
    "n07860988": 864, "n07871810": 806,
}
# The ILSVRC2012 devkit's ids (data/map_clsloc.txt), which the label map's target classes are.
DEVKIT_IDS = {"n02119789": 1, "n02100735": 2, "n02110185": 3, "n01751748": 490, "n15075141": 889, "n03255030": 1000}
# The standard class index (torchvision's / Keras' imagenet_class_index.json).
CLASS_INDEX = {0: "n01440764", 1: "n01443537", 207: "n02099601", 281: "n02123045", 317: "n02259212",
               388: "n02510455", 441: "n02823750", 999: "n15075141"}


def test_the_table_is_a_permutation_of_the_graphs_class_logits():
    logits, synsets = inception_classes.inception_logits(), inception_classes.imagenet_synsets()
    assert len(logits) == len(synsets) == 1000
    assert sorted(logits) == list(range(1, 1001))  # 0 is "background", 1001..1007 unused
    assert synsets == sorted(set(synsets)) and all(re.fullmatch(r"n\d{8}", s) for s in synsets)
    assert all(synsets[c] == s for c, s in CLASS_INDEX.items())
    logit_of = dict(zip(synsets, logits))
    assert {s: logit_of[s] for s in LABEL_MAP_ENTRIES} == LABEL_MAP_ENTRIES
    assert {s: logit_of[s] for s in DEVKIT_IDS} == DEVKIT_IDS
    assert logits[:3] == [449, 450, 442]  # tench, goldfish, great white shark: not c + 1


class FakeInception(torch.nn.Module):
    """1008 logits that differ per image and per logit, independent of the image content."""

    def forward(self, x):
        b = x.shape[0]
        return {"logits": torch.sin(torch.arange(b * 1008, dtype=torch.float32).view(b, 1008) * 0.37) * 5}


def _classifier(monkeypatch, class_map=None):
    import taming.eval.inception

    monkeypatch.setattr(taming.eval.inception, "load_inception", lambda path=None, device="cpu": FakeInception())
    return classifier.load_classifier(None, class_map, torch.device("cpu"))


def test_default_classifier_scores_class_c_at_the_graphs_logit_for_its_synset(monkeypatch):
    clf = _classifier(monkeypatch)
    pixels = np.zeros((4, 8, 8, 3), np.uint8)
    labels = [0, 207, 317, 999]
    got = clf.log_probs(pixels, labels)
    want = FakeInception()(torch.zeros(4, 3, 8, 8))["logits"].log_softmax(-1)
    table = inception_classes.inception_logits()
    np.testing.assert_allclose(got.numpy(), [float(want[i, table[c]]) for i, c in enumerate(labels)], rtol=1e-6)
    assert table[317] == 637 and clf.map_name.startswith(classifier.DEFAULT_MAP)
    with pytest.raises(ConfigError, match="no entry for class 1000"):
        clf.log_probs(pixels[:1], [1000])


def test_class_map_file_overrides_the_table(monkeypatch, tmp_path):
    path = tmp_path / "map.txt"
    path.write_text("5\n1007\n")
    clf = _classifier(monkeypatch, str(path))
    got = clf.log_probs(np.zeros((2, 8, 8, 3), np.uint8), [0, 1])
    want = FakeInception()(torch.zeros(2, 3, 8, 8))["logits"].log_softmax(-1)
    np.testing.assert_allclose(got.numpy(), [float(want[0, 5]), float(want[1, 1007])], rtol=1e-6)
    assert clf.map_name == str(path)
