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
from taming.generation.models import transformer_run
from taming.generation.samples import SampleSettings, image_seed, sample_images
from test_app import make_run, prefix_config

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
    direct = sample_images(loaded, [None], [image_seed(0, 3)], SampleSettings(top_k=8))
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
    assert capsys.readouterr().err.strip() == "taming sample: error: --accept-rate 1.5: must be in (0, 1]"
    assert sample(class_run, tmp_path / "x", "-n", "1", "--cfg-scale", "2") == 2
    assert "cfg_null_token: not set" in capsys.readouterr().err
