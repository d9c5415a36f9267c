"""`taming sample`: seeded per image, resumable, class folders, settings JSON, rejection sampling.

Tiny transformer runs (16 px images, 8x8 codes, a one-layer GPT with random weights) as in test_app.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taming.cli.main import main
from taming.generation.files import image_name
from taming.generation.runs import transformer_run
from taming.generation.drawing import SamplingSpec
from taming.generation.samples import image_seed, sample_images
from taming.sampling import generate
from helpers import FIXTURES, fixture_gpt, make_run, original_run, prefix_config

pytestmark = pytest.mark.usefixtures("one_thread")

LABELATOR = {"target": "taming.modules.util.Labelator", "params": {"n_classes": 5}}


@pytest.fixture(scope="module")
def class_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("cls"), prefix_config(LABELATOR, "class_label"), "cls")


@pytest.fixture(scope="module")
def uncond_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("uncond"), prefix_config("__is_unconditional__", "image"), "uncond")


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def sample(run: Path, out: Path, *flags: str) -> int:
    return main(["sample", "-r", str(run), "-o", str(out), "--precision", "fp32", *flags])


def test_generate_with_one_generator_per_row():
    """taming.sampling: row b draws from generator[b] alone, so a row's codes do not depend on its batch."""
    gpt = fixture_gpt("transformer_uncond")
    sos = torch.zeros(3, 1, dtype=torch.long)
    together = generate(gpt, sos, 32, top_k=20, generator=[torch.Generator().manual_seed(s) for s in (7, 8, 9)])
    for b, s in enumerate((7, 8, 9)):
        alone = generate(gpt, sos[:1], 32, top_k=20, generator=[torch.Generator().manual_seed(s)])
        assert torch.equal(together[b:b + 1], alone)
    assert not torch.equal(together[0], together[1])
    with pytest.raises(ValueError, match="2 generators for 3 rows"):
        generate(gpt, sos, 4, generator=[torch.Generator(), torch.Generator()])


def test_images_depend_on_seed_and_index_only(uncond_run, tmp_path, capsys):
    assert sample(uncond_run, tmp_path / "b1", "-n", "5", "--batch-size", "1", "--top-k", "8") == 0
    assert sample(uncond_run, tmp_path / "b3", "-n", "5", "--batch-size", "3", "--top-k", "8") == 0
    names = [image_name(i) for i in range(5)]
    assert sorted(p.name for p in (tmp_path / "b1" / "samples").iterdir()) == names
    for name in names:  # the same image whatever batch it was drawn in
        np.testing.assert_array_equal(pixels(tmp_path / "b1" / "samples" / name), pixels(tmp_path / "b3" / "samples" / name))
    first = [pixels(tmp_path / "b1" / "samples" / n) for n in names]
    assert all(not np.array_equal(first[0], f) for f in first[1:])  # each index its own stream
    # image i is what sample_images draws with (seed, i)'s generator
    loaded = transformer_run(str(uncond_run), device="cpu")
    direct = sample_images(loaded, [None], [image_seed(0, 3)], SamplingSpec(top_k=8))
    np.testing.assert_array_equal(first[3], np.asarray(((direct[0].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8)))
    assert sample(uncond_run, tmp_path / "s1", "-n", "2", "--top-k", "8", "--seed", "1") == 0
    assert not np.array_equal(pixels(tmp_path / "s1" / "samples" / names[0]), first[0])
    settings = json.loads((tmp_path / "b3" / "settings.json").read_text())
    assert settings["checkpoint"]["path"] == str((uncond_run / "checkpoints" / "last.ckpt").resolve())
    assert settings["checkpoint"]["global_step"] is None  # a bare state dict: no step stored
    assert settings["precision"] == "fp32" and settings["top_k"] == 8 and settings["batch_size"] == 3
    assert settings["classes"] == "unconditional" and settings["images"] == 5 and settings["written_now"] == 5
    assert settings["images_per_s"] > 0 and settings["peak_rss_mib"] > 0
    assert Image.open(tmp_path / "b3" / "grid.png").size == (2 + 5 * 18, 2 + 18)  # 5 tiles of 16 px
    assert "5 samples in" in capsys.readouterr().out


def test_a_stopped_run_continues_skipping_written_images(uncond_run, tmp_path):
    out = tmp_path / "out"
    assert sample(uncond_run, out, "-n", "4", "--batch-size", "2") == 0
    reference = {i: pixels(out / "samples" / image_name(i)) for i in range(4)}
    # as if killed: two images missing, a temporary file of an interrupted write left behind
    (out / "samples" / image_name(1)).unlink()
    (out / "samples" / image_name(3)).unlink()
    (out / "samples" / f".{image_name(3)}.abc.part").write_bytes(b"half a png")
    before = (out / "samples" / image_name(0)).stat().st_mtime_ns
    assert sample(uncond_run, out, "-n", "4", "--batch-size", "2") == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["already_written"] == 2 and settings["written_now"] == 2
    assert (out / "samples" / image_name(0)).stat().st_mtime_ns == before  # not rewritten
    assert sorted(p.name for p in (out / "samples").iterdir()) == [image_name(i) for i in range(4)]
    for i in range(4):
        np.testing.assert_array_equal(pixels(out / "samples" / image_name(i)), reference[i])


def test_class_conditional_writes_class_folders(class_run, tmp_path):
    out = tmp_path / "out"
    assert sample(class_run, out, "-n", "3", "--classes", "4,1", "--batch-size", "2", "--top-k", "6") == 0
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["1", "4"]
    for c in ("1", "4"):
        assert sorted(p.name for p in (out / "samples" / c).iterdir()) == [image_name(i) for i in range(3)]
    # class 4's images do not depend on which other classes were asked for
    assert sample(class_run, tmp_path / "only4", "-n", "2", "--classes", "4", "--top-k", "6") == 0
    for i in range(2):
        np.testing.assert_array_equal(pixels(out / "samples" / "4" / image_name(i)),
                                      pixels(tmp_path / "only4" / "samples" / "4" / image_name(i)))
    assert not np.array_equal(pixels(out / "samples" / "4" / image_name(0)), pixels(out / "samples" / "1" / image_name(0)))
    settings = json.loads((out / "settings.json").read_text())
    assert settings["classes"] == [4, 1] and settings["images"] == 6 and settings["per_class"]
    assert Image.open(out / "grid.png").size == (2 + 3 * 18, 2 + 2 * 18)  # a row per class
    assert sample(class_run, tmp_path / "all", "-n", "1") == 0
    assert sorted(p.name for p in (tmp_path / "all" / "samples").iterdir()) == [str(c) for c in range(5)]


def test_user_errors_are_one_line(class_run, uncond_run, tmp_path, capsys):
    assert sample(class_run, tmp_path / "x", "-n", "1", "--classes", "7") == 2
    assert capsys.readouterr().err.strip() == "taming sample: error: --classes '7': the model's classes are 0..4"
    assert sample(uncond_run, tmp_path / "x", "-n", "1", "--accept-rate", "0.5") == 2
    assert "rejection sampling needs a class-conditional model" in capsys.readouterr().err
    assert sample(class_run, tmp_path / "x", "-n", "1", "--accept-rate", "1.5", "--classifier", "x.pt") == 2
    assert capsys.readouterr().err.strip() == ("taming sample: error: argument --accept-rate: must be a finite number "
                                               "> 0 and <= 1, got '1.5' (see taming sample --help)")
    assert sample(class_run, tmp_path / "x", "-n", "1", "--cfg-scale", "2") == 2
    assert "cfg_null_token: not set" in capsys.readouterr().err


class RedScorer(torch.nn.Module):
    """A stand-in classifier: class k's logit is k * (mean red in [0, 1]) * 10."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, 0].mean(dim=(1, 2)) / 255.0  # (B,)
        return red[:, None] * torch.arange(5, dtype=x.dtype, device=x.device)[None] * 10.0  # (B, 5)


def red_log_probs(picture: np.ndarray) -> np.ndarray:
    logits = picture[..., 0].astype(np.float64).mean() / 255.0 * np.arange(5) * 10.0
    return logits - np.log(np.exp(logits).sum())


def test_rejection_keeps_the_candidates_the_classifier_scores_highest(class_run, tmp_path, capsys):
    scorer = tmp_path / "red.pt2"  # torch.export's format
    batch = torch.export.Dim("batch")
    program = torch.export.export(RedScorer(), (torch.zeros(2, 3, 16, 16),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(scorer))
    out = tmp_path / "kept"
    flags = ("--classes", "0,4", "--top-k", "6", "--batch-size", "3")
    assert sample(class_run, out, "-n", "2", "--accept-rate", "0.4", "--classifier", str(scorer), *flags) == 0
    # the candidates are the plain samples 0..4 of each class (same seeds): score them independently
    assert sample(class_run, tmp_path / "all", "-n", "5", *flags) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["rejection"]["candidates"] == 10 and settings["rejection"]["kept"] == 4
    assert settings["rejection"]["acceptance_rate"] == pytest.approx(0.4)
    assert "acceptance rate 0.4000" in capsys.readouterr().out
    for c in (0, 4):
        candidates = [pixels(tmp_path / "all" / "samples" / str(c) / image_name(j)) for j in range(5)]
        scores = np.array([red_log_probs(p)[c] for p in candidates])
        best = sorted(np.argsort(-scores, kind="stable")[:2])
        assert sorted(p.name for p in (out / "samples" / str(c)).iterdir()) == [image_name(0), image_name(1)]
        for i, j in enumerate(best):
            np.testing.assert_array_equal(pixels(out / "samples" / str(c) / image_name(i)), candidates[j])
        record = json.loads((out / "rejection" / f"{c}.json").read_text())
        assert record["kept"] == [int(j) for j in best] and record["candidates"] == 5
        np.testing.assert_allclose(record["log_prob"], scores, rtol=1e-5, atol=1e-5)
    assert not (out / "candidates" / "0").exists()  # candidates that were not kept are removed
    # a rerun finds every class done
    assert sample(class_run, out, "-n", "2", "--accept-rate", "0.4", "--classifier", str(scorer), *flags) == 0
    assert json.loads((out / "settings.json").read_text())["written_now"] == 0


# ---- a run folder released by the original ---------------------------------------------------------
def test_an_original_transformer_run_samples_what_the_original_computes(tmp_path):
    fixture = FIXTURES / "transformer_uncond"
    run = original_run(tmp_path / "logs", fixture, "uncond_transformer")
    expected = torch.load(fixture / "expected.pt", weights_only=True)
    out = tmp_path / "out"
    assert sample(run, out, "-n", "1", "--top-k", "1") == 0  # top-1: the original's argmax codes
    picture = pixels(out / "samples" / image_name(0)).astype(int)
    target = ((expected["greedy_img"][0].clamp(-1, 1).permute(1, 2, 0) + 1) * 127.5).numpy()
    assert picture.shape == (64, 64, 3) and np.abs(picture - target).max() <= 0.5 + 1e-3  # rounding only
    settings = json.loads((out / "settings.json").read_text())
    assert settings["checkpoint"]["global_step"] == 1200 and settings["run"] == str(run)


@pytest.mark.slow
def test_rejection_with_the_inception_network_by_default(class_run, tmp_path, capsys, monkeypatch):
    """The default classifier: the FID Inception network's logits, ImageNet class c read at the graph's
    logit for its synset (not c + 1: the graph orders its classes differently)."""
    from taming.eval.inception import FIDInceptionV3, load_inception
    from taming.eval.inception_classes import inception_logits

    torch.manual_seed(5)
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"  # seeded stand-in weights, the standard layout
    torch.save(FIDInceptionV3().state_dict(), weights)
    out = tmp_path / "out"
    assert sample(class_run, out, "-n", "1", "--classes", "2,3", "--accept-rate", "0.5", "--top-k", "6",
                  "--inception-weights", str(weights)) == 0
    assert sample(class_run, tmp_path / "all", "-n", "2", "--classes", "2,3", "--top-k", "6") == 0
    net = load_inception(weights)
    for c in (2, 3):
        candidates = np.stack([pixels(tmp_path / "all" / "samples" / str(c) / image_name(j)) for j in range(2)])
        with torch.no_grad():
            logits = net(torch.from_numpy(candidates).permute(0, 3, 1, 2).float())["logits"]
        best = int(logits.log_softmax(-1)[:, inception_logits()[c]].argmax())
        np.testing.assert_array_equal(pixels(out / "samples" / str(c) / image_name(0)), candidates[best])
    rejection = json.loads((out / "settings.json").read_text())["rejection"]
    assert rejection["classifier"] == "Inception (FID network) logits" and rejection["acceptance_rate"] == 0.5
    assert "inception2015_imagenet_logits.txt" in rejection["class_map"]
    # without the weight file: one line naming it
    monkeypatch.setenv("TAMING_INCEPTION", str(tmp_path / "none.pth"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    capsys.readouterr()
    assert sample(class_run, tmp_path / "x", "-n", "1", "--classes", "2", "--accept-rate", "0.5") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("taming sample: error: ") and "pt_inception-2015-12-05" in err[0]
