"""VGG16 for precision/recall (torch-fidelity 0.4.0's default PRC features, "fc2_relu"): the network
against a functional float64 reference, its weight file in torchvision's layout, and
`taming eval samples --metrics prc` end to end. A full VGG16 at 224 px is ~15 GFLOP per image and its
file ~530 MB: the seeded file is made once per module and the tests use a handful of images."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from taming.checkpoint import CheckpointError
from taming.cli.main import main
from taming.eval import fidelity
from taming.eval.samples import folder_features
from taming.eval.vgg16 import load_vgg16
from taming.eval.weights import ENV, VGG16_ENV, VGG16_FILE

# torchvision's vgg16: features.N are the conv layers below, a 2x2 max pool follows the ones in POOLED
CONVS = {0: 64, 2: 64, 5: 128, 7: 128, 10: 256, 12: 256, 14: 256, 17: 512, 19: 512, 21: 512, 24: 512, 26: 512,
         28: 512}
POOLED = {2, 7, 14, 21, 28}
LINEARS = {0: (4096, 25088), 3: (4096, 4096), 6: (1000, 4096)}  # classifier.N: (out, in)


def seeded_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision's vgg16 state_dict layout, He-scaled normal weights so activations keep their size."""
    g = torch.Generator().manual_seed(seed)
    sd, cin = {}, 3
    for n, cout in CONVS.items():
        sd[f"features.{n}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        sd[f"features.{n}.bias"] = torch.randn(cout, generator=g) * 0.1
        cin = cout
    for n, (cout, cin) in LINEARS.items():
        sd[f"classifier.{n}.weight"] = torch.randn(cout, cin, generator=g) * (2 / cin) ** 0.5
        sd[f"classifier.{n}.bias"] = torch.randn(cout, generator=g) * 0.1
    return sd


@pytest.fixture(scope="module")
def state_dict():
    return seeded_state_dict()


@pytest.fixture(scope="module")
def weights(state_dict, tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg16") / VGG16_FILE
    torch.save(state_dict, path)
    return path


def tf1_resize(x: np.ndarray, size: int) -> np.ndarray:
    """TF 1.x bilinear, align_corners=False, from its definition: output d reads input d * in / out
    (float32 coordinates), between floor and min(floor + 1, in - 1). x: (B, C, H, W) float64."""
    def taps(n_in):
        src = np.arange(size, dtype=np.float32) * np.float32(n_in / size)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), (src - lo).astype(np.float64)

    (y0, y1, fy), (x0, x1, fx) = taps(x.shape[2]), taps(x.shape[3])
    rows = x[:, :, y0] + (x[:, :, y1] - x[:, :, y0]) * fy[:, None]
    return rows[..., x0] + (rows[..., x1] - rows[..., x0]) * fx


def reference_fc2(sd, images: torch.Tensor) -> torch.Tensor:
    """torch-fidelity's VGG16 path written out with functional ops in float64: (B, 3, H, W) uint8 -> (B, 4096)."""
    x = torch.from_numpy(tf1_resize(images.double().numpy(), 224))
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1) * 255
    x = (x - mean) / std
    for n in CONVS:
        x = F.relu(F.conv2d(x, sd[f"features.{n}.weight"].double(), sd[f"features.{n}.bias"].double(), padding=1))
        if n in POOLED:
            x = F.max_pool2d(x, 2)
    assert x.shape[1:] == (512, 7, 7)
    x = F.relu(F.linear(x.flatten(1), sd["classifier.0.weight"].double(), sd["classifier.0.bias"].double()))
    return F.linear(x, sd["classifier.3.weight"].double(), sd["classifier.3.bias"].double())


@pytest.mark.slow
def test_features_match_a_functional_reference(state_dict, weights):
    net = load_vgg16(weights)
    rng = np.random.default_rng(0)
    for shape in [(2, 3, 37, 53), (1, 3, 300, 260)]:  # upsampled and downsampled to 224
        images = torch.from_numpy(rng.integers(0, 256, shape, dtype=np.uint8))
        with torch.no_grad():
            got = net(images)
        want = reference_fc2(state_dict, images)
        scale = float(want.abs().max())
        torch.testing.assert_close(got["fc2"].double(), want, rtol=1e-5, atol=1e-5 * scale)
        torch.testing.assert_close(got["fc2_relu"].double(), want.clamp_min(0), rtol=1e-5, atol=1e-5 * scale)
        assert got["fc2_relu"].shape == (shape[0], 4096) and 0.2 < float((want > 0).double().mean()) < 0.8


@pytest.mark.slow
def test_weight_file_round_trip_with_and_without_the_dropped_tail(state_dict, weights, tmp_path):
    net = load_vgg16(weights)  # torchvision's file: classifier.6 (the 1000-way layer) is skipped
    assert torch.equal(net.classifier[3].weight, state_dict["classifier.3.weight"]) and not net.training
    assert not any(p.requires_grad for p in net.parameters())
    assert sorted(net.state_dict()) == sorted(k for k in state_dict if not k.startswith("classifier.6."))
    truncated = tmp_path / "truncated.pth"  # torch-fidelity's model after deleting the tail
    torch.save({k: v for k, v in state_dict.items() if not k.startswith("classifier.6.")}, truncated)
    assert torch.equal(load_vgg16(truncated).features[28].bias, state_dict["features.28.bias"])
    wrong = tmp_path / "wrong.pth"  # another network's file: one error naming what does not fit
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(CheckpointError, match="do not fit VGG16Features") as err:
        load_vgg16(wrong)
    assert "missing 29" in str(err.value) and "unexpected 1: fc.weight" in str(err.value)


def _folder(path, n, seed, size=16):
    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path / f"{i:03d}.png")
    return path


@pytest.mark.slow
def test_cli_prc_uses_vgg16_fc2_relu_by_flag_and_by_env(weights, tmp_path, capsys, monkeypatch):
    real, fake = _folder(tmp_path / "real", 4, 0), _folder(tmp_path / "fake", 4, 1)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no Inception file anywhere: prc needs none
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv(VGG16_ENV, raising=False)
    out = tmp_path / "prc.json"
    args = ["eval", "samples", "--real", str(real), "--fake", str(fake), "--metrics", "prc", "--batch-size", "3"]
    assert main([*args, "--vgg16-weights", str(weights), "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["prc_features"] == "vgg16 fc2_relu" and got["images_real"] == 4 and got["images_fake"] == 4
    assert "precision" in capsys.readouterr().out
    net = load_vgg16(weights)
    fr, ff = (folder_features(net, f, keys=("fc2_relu",))["fc2_relu"] for f in (real, fake))
    want = fidelity.precision_recall(fr, ff)
    assert {k: got[k] for k in want} == pytest.approx(want, abs=0)
    monkeypatch.setenv(VGG16_ENV, str(weights.parent))  # a folder holding the file
    assert main([*args, "--json", str(out)]) == 0
    assert {k: json.loads(out.read_text())[k] for k in want} == pytest.approx(want, abs=0)


def test_cli_missing_vgg16_file_is_one_line(tmp_path, capsys, monkeypatch):
    real = _folder(tmp_path / "real", 4, 0)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(VGG16_ENV, raising=False)
    assert main(["eval", "samples", "--real", str(real), "--fake", str(real), "--metrics", "prc"]) == 2
    err = capsys.readouterr().err.strip()
    hub = tmp_path / "torch" / "hub" / "checkpoints" / VGG16_FILE
    assert "\n" not in err and err.startswith("taming eval: error: ") and str(hub) in err
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in err and "--vgg16-weights" in err
