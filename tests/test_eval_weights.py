"""Where the Inception weights are looked for, both file layouts, and the error when they are missing."""
import pytest
import torch

from taming.checkpoint import CheckpointError
from taming.eval.inception import FIDInceptionV3, load_inception
from taming.eval.weights import ENV, FILES, InceptionWeightsNotFound, find_inception_weights


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty torch hub cache and no $TAMING_INCEPTION."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(ENV, raising=False)
    return tmp_path


def test_missing_file_is_one_error_naming_file_places_and_source(no_weights):
    with pytest.raises(InceptionWeightsNotFound) as err:
        find_inception_weights()
    msg = str(err.value)
    hub = no_weights / "torch" / "hub" / "checkpoints"
    assert FILES[0] in msg and FILES[1] in msg and str(hub / FILES[0]) in msg and str(hub / FILES[1]) in msg
    assert "github.com/mseitzer/pytorch-fid" in msg and "--inception-weights" in msg and "\n" not in msg


def test_lookup_order_explicit_then_env_then_hub_cache(no_weights, monkeypatch):
    hub = no_weights / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / FILES[1]).write_bytes(b"x")  # torch-fidelity's name
    assert find_inception_weights() == hub / FILES[1]
    (hub / FILES[0]).write_bytes(b"x")  # pytorch-fid's name comes first
    assert find_inception_weights() == hub / FILES[0]
    env_dir = no_weights / "env"
    env_dir.mkdir()
    (env_dir / FILES[1]).write_bytes(b"x")
    monkeypatch.setenv(ENV, str(env_dir))  # a folder holding the file
    assert find_inception_weights() == env_dir / FILES[1]
    given = no_weights / "mine.pth"
    given.write_bytes(b"x")
    assert find_inception_weights(given) == given
    with pytest.raises(InceptionWeightsNotFound, match="typo.pth"):  # no silent fallback from a given path
        find_inception_weights(no_weights / "typo.pth")


@pytest.mark.slow
def test_loads_with_and_without_num_batches_tracked(no_weights):
    net = FIDInceptionV3()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.01)
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = no_weights / FILES[0]
    torch.save(sd, path)
    loaded = load_inception(path)
    assert torch.equal(loaded.fc.weight, net.fc.weight) and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    sd.pop("fc.bias")
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="missing 1: fc.bias"):
        load_inception(path)


def test_vgg16_lookup_shares_the_order_and_names_its_own_file(no_weights, monkeypatch):
    from taming.eval.weights import VGG16, VGG16_ENV, VGG16_FILE, VGG16WeightsNotFound, find_weights

    monkeypatch.delenv(VGG16_ENV, raising=False)
    with pytest.raises(VGG16WeightsNotFound) as err:
        find_weights(VGG16)
    msg = str(err.value)
    hub = no_weights / "torch" / "hub" / "checkpoints"
    assert str(hub / VGG16_FILE) in msg and "https://download.pytorch.org/models/vgg16-397923af.pth" in msg
    assert "--vgg16-weights" in msg and f"${VGG16_ENV}" in msg and "\n" not in msg and "inception" not in msg
    hub.mkdir(parents=True)
    (hub / VGG16_FILE).write_bytes(b"x")  # where torchvision itself caches it
    assert find_weights(VGG16) == hub / VGG16_FILE
    env_file = no_weights / "elsewhere.pth"
    env_file.write_bytes(b"x")
    monkeypatch.setenv(VGG16_ENV, str(env_file))
    assert find_weights(VGG16) == env_file
    with pytest.raises(VGG16WeightsNotFound, match="typo.pth"):  # a given path is the only place looked at
        find_weights(VGG16, no_weights / "typo.pth")
