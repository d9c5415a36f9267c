"""`taming eval samples`: the printed table, the JSON keys, statistics files as --real, and user errors."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from taming.cli.main import main
from taming.eval import fidelity
from taming.eval.inception import FIDInceptionV3, load_inception
from taming.eval.samples import folder_features, load_statistics
from taming.eval.weights import ENV, VGG16_ENV, VGG16_FILE


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("inception") / "inception.pth"
    torch.save(FIDInceptionV3().state_dict(), path)
    return path


def _folder(path, n, seed, size=24):
    path.mkdir()
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size, size, 3))
    for i in range(n):
        noise = rng.integers(-60, 61, (size, size, 3)) * (1 + seed)
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path / f"{i:03d}.png")
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    return _folder(root / "real", 8, 0), _folder(root / "fake", 6, 1)


def test_samples_table_json_and_statistics_file(weights, folders, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ENV, str(weights))  # found through $TAMING_INCEPTION
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no VGG16 file: prc is left out, saying why
    monkeypatch.delenv(VGG16_ENV, raising=False)
    real, fake = folders
    out, stats = tmp_path / "m.json", tmp_path / "real.npz"
    assert main(["eval", "samples", "--real", str(real), "--fake", str(fake), "--isc-splits", "2",
                 "--kid-subsets", "3", "--batch-size", "5", "--json", str(out), "--save-real-stats", str(stats)]) == 0
    printed = capsys.readouterr().out
    got = json.loads(out.read_text())
    for key in (fidelity.FID, fidelity.KID_MEAN, fidelity.KID_STD, fidelity.ISC_MEAN, fidelity.ISC_STD):
        assert key in got and key in printed
    assert fidelity.PRECISION not in got and VGG16_FILE in got["skipped"]["prc"] and "prc" in printed
    assert got["kid_subset_size"] == 6 and got["images_real"] == 8 and got["images_fake"] == 6
    # the same numbers from the library on the same features
    net = load_inception(weights)
    fr, ff = folder_features(net, real), folder_features(net, fake)
    assert got[fidelity.FID] == pytest.approx(fidelity.frechet_distance_of_features(ff["pool"], fr["pool"]), rel=1e-9)
    assert got[fidelity.ISC_MEAN] == pytest.approx(fidelity.inception_score(ff["logits_unbiased"], 2)[fidelity.ISC_MEAN])
    assert got[fidelity.FID] > 0
    # the statistics file (pytorch-fid's mu/sigma) serves as --real: same FID, only FID and IS by default
    mu, sigma = load_statistics(stats)
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)
    assert main(["eval", "samples", "--real", str(stats), "--fake", str(fake), "--isc-splits", "2",
                 "--json", str(out)]) == 0
    again = json.loads(out.read_text())
    assert again[fidelity.FID] == pytest.approx(got[fidelity.FID], rel=1e-6)
    assert fidelity.KID_MEAN not in again and fidelity.ISC_MEAN in again and "statistics" in again["skipped"]["kid"]


def test_prc_on_inception_pool_features_when_asked(weights, folders, tmp_path):
    real, fake = folders
    out = tmp_path / "prc.json"
    assert main(["eval", "samples", "--real", str(real), "--fake", str(fake), "--metrics", "prc", "--prc-features",
                 "inception", "--inception-weights", str(weights), "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    net = load_inception(weights)
    want = fidelity.precision_recall(folder_features(net, real)["pool"], folder_features(net, fake)["pool"])
    assert {k: got[k] for k in want} == pytest.approx(want, abs=0) and got["prc_features"] == "inception pool"


def test_user_errors_are_one_line(weights, folders, tmp_path, capsys, monkeypatch):
    real, fake = folders
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(ENV, raising=False)
    assert main(["eval", "samples", "--real", str(real), "--fake", str(fake)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pt_inception-2015-12-05-6726825d.pth" in err and str(tmp_path / "torch") in err

    assert main(["eval", "samples", "--real", str(real), "--fake", str(fake), "--metrics", "fid,lpips",
                 "--inception-weights", str(weights)]) == 2
    assert "unknown metric(s) lpips" in capsys.readouterr().err

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "000.png").write_bytes(b"not a png")
    assert main(["eval", "samples", "--real", str(real), "--fake", str(bad), "--metrics", "isc",
                 "--isc-splits", "1", "--inception-weights", str(weights)]) == 2
    assert str(bad / "000.png") in capsys.readouterr().err

    stats = tmp_path / "s.npz"
    np.savez(stats, mu=np.zeros(3))
    assert main(["eval", "samples", "--real", str(stats), "--fake", str(fake), "--metrics", "fid",
                 "--inception-weights", str(weights)]) == 2
    assert "'sigma'" in capsys.readouterr().err
    np.savez(stats, mu=np.zeros(3), sigma=np.eye(3))
    assert main(["eval", "samples", "--real", str(stats), "--fake", str(fake), "--metrics", "kid",
                 "--inception-weights", str(weights)]) == 2
    assert "holds no features" in capsys.readouterr().err


def test_every_input_is_checked_before_any_work(weights, folders, tmp_path, capsys, monkeypatch):
    """Issue 20: all --fake features were computed before a missing --real was noticed."""
    real, fake = folders

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the inputs were checked")

    monkeypatch.setattr("taming.eval.samples.extract_features", no_work)
    monkeypatch.setattr("taming.eval.inception.load_inception", no_work)
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, needle in (
            (["--real", str(tmp_path / "nope"), "--fake", str(fake)], f"--real {tmp_path / 'nope'}: not found"),
            (["--real", str(real), "--fake", str(tmp_path / "gone")], f"--fake {tmp_path / 'gone'}: not found"),
            (["--real", str(real), "--fake", str(empty)], f"no images (.png"),
            (["--real", str(real), "--fake", str(fake), "--kid-subsets", "0"], "--kid-subsets 0: must be >= 1"),
            (["--real", str(real), "--fake", str(fake), "--json", str(tmp_path)], f"--json {tmp_path}: is a folder")):
        assert main(["eval", "samples", *argv, "--inception-weights", str(weights)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (argv, err)


def test_folders_of_mixed_sizes_are_batched_by_size_in_file_order(tmp_path):
    from taming.eval.samples import list_images, same_size_batches

    sizes = [(8, 8), (8, 8), (6, 10), (8, 8), (8, 8), (8, 8)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(np.full((h, w, 3), i, np.uint8)).save(tmp_path / f"{i:02d}.png")
    (tmp_path / "notes.txt").write_text("not an image")  # other files are ignored
    batches = list(same_size_batches(list_images(tmp_path), batch_size=2))
    assert [tuple(b.shape) for b in batches] == [(2, 3, 8, 8), (1, 3, 6, 10), (2, 3, 8, 8), (1, 3, 8, 8)]
    assert torch.cat([b[:, 0, 0, 0] for b in batches]).tolist() == list(range(6))
