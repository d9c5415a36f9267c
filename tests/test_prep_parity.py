"""The extraction networks against the reference code (isl-org/MiDaS with its transform,
kazuto1011/deeplab-pytorch's MSC) run with the same seeded weights on the same small photos
(tests/fixtures/prep, README there): key names and shapes, the transform, the outputs."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seeded_weights import seeded_state_dict
from taming.checkpoint import CheckpointError, load_weights
from taming.prep import deeplab, midas
from taming.prep.maps import DepthMaker, SegmentationMaker, load_published

FIXTURES = Path(__file__).parent / "fixtures" / "prep"
KEYS = json.loads((FIXTURES / "keys.json").read_text())


def photo(name: str) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(FIXTURES / name).convert("RGB"))).permute(2, 0, 1)[None]


def seeded(net: torch.nn.Module) -> torch.nn.Module:
    load_weights(net, seeded_state_dict(net.state_dict()))
    return net.eval()


def reference_cases(maker_class, name: str):
    """The maker with its network's seeded weights, the reference's outputs, and the photos they are of."""
    expected = torch.load(FIXTURES / f"{name}_expected.pt", weights_only=True)
    return maker_class(seeded(maker_class.network())), expected, [photo(f"{name}_{k}.png") for k in range(2)]


@pytest.mark.parametrize("name,build", [("midas", midas.MidasNet), ("deeplab", deeplab.deeplab_v2_msc)])
def test_key_names_and_shapes_are_the_published_ones(name, build):
    ours = [[k, list(v.shape)] for k, v in build().state_dict().items()]
    assert ours == KEYS[name]  # same keys, same shapes, same order


@pytest.mark.slow
def test_midas_matches_the_reference(one_thread):
    maker, expected, images = reference_cases(DepthMaker, "midas")
    for k, image in enumerate(images):
        net_input = maker.prepare(image)
        assert tuple(net_input.shape[-2:]) == tuple(expected[f"net_size_{k}"].tolist())
        torch.testing.assert_close(net_input[:, ::8, ::8], expected[f"net_input_{k}"], rtol=1e-5, atol=1e-5)
        prediction = maker.run(net_input[None])[0]
        torch.testing.assert_close(prediction[::8, ::8], expected[f"prediction_{k}"], rtol=1e-4, atol=1e-4)
        depth = maker.finish(prediction, tuple(image.shape[-2:]))
        assert depth.dtype == np.float32 and depth.shape == tuple(image.shape[-2:])
        np.testing.assert_allclose(depth, expected[f"depth_{k}"].numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_deeplab_matches_the_reference(one_thread):
    maker, expected, images = reference_cases(SegmentationMaker, "deeplab")
    for k, image in enumerate(images):
        logits = maker.run(maker.prepare(image)[None])[0]
        torch.testing.assert_close(logits, expected[f"logits_{k}"], rtol=1e-4, atol=1e-4)
        labels = maker.finish(logits, tuple(image.shape[-2:]))
        assert labels.dtype == np.uint8 and labels.shape == tuple(image.shape[-2:])
        clear = expected[f"margin_{k}"].numpy() > 1e-3  # a near-tie may go either way in float32
        assert clear.mean() > 0.99
        np.testing.assert_array_equal(labels[clear], expected[f"labels_{k}"].numpy()[clear])


def test_published_files_load_key_for_key(tmp_path):
    """Strict loading through taming.checkpoint (weights_only): MiDaS's {"model", "optimizer"} wrapper,
    optional num_batches_tracked; a missing or foreign key is an error naming it (a small DeepLab)."""
    net = deeplab.DeepLabV2(n_classes=5, blocks=(1, 1, 1, 1))
    sd = seeded_state_dict(net.state_dict())
    plain = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save({"model": plain, "optimizer": {"lr": torch.tensor(1.0)}}, tmp_path / "wrapped.pt")
    loaded = load_published(deeplab.DeepLabV2(n_classes=5, blocks=(1, 1, 1, 1)), tmp_path / "wrapped.pt")
    assert torch.equal(loaded.aspp.c3.weight, sd["aspp.c3.weight"]) and not loaded.training
    torch.save({**plain, "aspp.c4.weight": sd["aspp.c3.weight"]}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match="unexpected 1: aspp.c4.weight"):
        load_published(deeplab.DeepLabV2(n_classes=5, blocks=(1, 1, 1, 1)), tmp_path / "extra.pt")
    assert deeplab.key_problem(plain) is not None and "keys are not DeepLab" in deeplab.key_problem(plain)
