"""`taming sample-conditional` (the original make_samples.py) over a run's validation split."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from taming.generation.conditioning import Example, encode_condition
from taming.cli.main import main
from taming.data.landscapes import LandscapesValidation
from taming.generation.files import image_name, to_uint8
from taming.generation.runs import transformer_run
from taming.generation.samples import image_seed
from taming.sampling import generate, sample_window
from helpers import make_run, seg_transformer_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("seg"), seg_transformer_config(None, None), "seg")


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def expected_sample(run, item: dict, seed: int, top_k: int) -> np.ndarray:
    seg = torch.from_numpy(item["segmentation"]).permute(2, 0, 1)[None]
    condition = encode_condition(run, Example(None, seg, "item"))
    g = torch.Generator().manual_seed(seed)
    if tuple(condition.grid.shape[1:]) == run.window:
        codes = generate(run.model.transformer, condition.codes, 64, top_k=top_k, generator=g).reshape(1, 8, 8)
    else:
        codes = sample_window(run.model.transformer, condition.grid, window=run.window, top_k=top_k, generator=g)
    return to_uint8(run.model.first_stage_model.decode_codes(codes))[0]


def test_writes_inputs_conditioning_reconstructions_and_samples(seg_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sample-conditional", "-r", str(seg_run), "-o", str(out), "-k", "4", "--precision", "fp32"]) == 0
    assert "2 validation examples ->" in capsys.readouterr().out
    for folder in ("inputs", "reconstructions", "conditioning", "samples"):
        assert sorted(p.name for p in (out / folder).iterdir()) == [image_name(0), image_name(1)], folder
    run = transformer_run(str(seg_run), device="cpu")
    items = LandscapesValidation(size=16, length=2)
    for i in range(2):
        item = items[i]
        np.testing.assert_array_equal(read(out / "inputs" / image_name(i)),
                                      to_uint8(torch.from_numpy(item["image"]).permute(2, 0, 1)[None])[0])
        np.testing.assert_array_equal(read(out / "samples" / image_name(i)), expected_sample(run, item, image_seed(0, i), 4))
        fs = run.model.first_stage_model
        x = torch.from_numpy(item["image"]).permute(2, 0, 1)[None]
        np.testing.assert_array_equal(read(out / "reconstructions" / image_name(i)),
                                      to_uint8(fs.decode_codes(fs.encode_to_codes(x)))[0])
        assert read(out / "conditioning" / image_name(i)).shape == (16, 16, 3)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["split"] == "validation" and settings["examples"] == 2 and settings["written_now"] == 2
    # a rerun skips the examples done
    assert main(["sample-conditional", "-r", str(seg_run), "-o", str(out), "-k", "4", "--precision", "fp32"]) == 0
    assert json.loads((out / "settings.json").read_text())["written_now"] == 0


def test_images_larger_than_the_window_use_the_sliding_window(seg_run, tmp_path):
    """24 px validation crops: 12x12 codes for a model trained on 8x8."""
    larger = tmp_path / "larger.yaml"
    larger.write_text(yaml.safe_dump({"data": {"params": {"validation": {"params": {"size": 24, "length": 1}}}}}))
    project = next((seg_run / "configs").glob("*-project.yaml"))
    out = tmp_path / "out"
    assert main(["sample-conditional", "-r", str(seg_run), "--config", str(project), str(larger), "-o", str(out),
                 "-k", "4", "--seed", "3", "--precision", "fp32"]) == 0
    run = transformer_run(str(seg_run), device="cpu")
    item = LandscapesValidation(size=24, length=1)[0]
    assert read(out / "samples" / image_name(0)).shape == (24, 24, 3)
    np.testing.assert_array_equal(read(out / "samples" / image_name(0)), expected_sample(run, item, image_seed(3, 0), 4))


def test_a_missing_split_is_one_line(seg_run, tmp_path, capsys):
    assert main(["sample-conditional", "-r", str(seg_run), "--split", "test", "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"taming sample-conditional: error: {seg_run}: its config has no data.params.test (splits: train, "
        "validation); pass --split or --config DATA.yaml")


def test_completion_keeps_the_top_rows_of_each_image(seg_run, tmp_path, capsys):
    """--keep-rows 3: the sample is the sliding window started after the image's first 3 code rows."""
    out = tmp_path / "out"
    assert main(["sample-conditional", "-r", str(seg_run), "-o", str(out), "-k", "4", "--precision", "fp32",
                 "--keep-rows", "3", "--limit", "1"]) == 0
    run = transformer_run(str(seg_run), device="cpu")
    item = LandscapesValidation(size=16, length=2)[0]
    fs = run.model.first_stage_model
    given = fs.encode_to_codes(torch.from_numpy(item["image"]).permute(2, 0, 1)[None])
    seg = torch.from_numpy(item["segmentation"]).permute(2, 0, 1)[None]
    condition = encode_condition(run, Example(None, seg, "item"))
    codes = sample_window(run.model.transformer, condition.grid, given.clone(), window=run.window, start=(3, 0),
                          top_k=4, generator=torch.Generator().manual_seed(image_seed(0, 0)))
    assert torch.equal(codes[:, :3], given[:, :3]) and not torch.equal(codes, given)
    np.testing.assert_array_equal(read(out / "samples" / image_name(0)), to_uint8(fs.decode_codes(codes))[0])
    assert json.loads((out / "settings.json").read_text())["keep_rows"] == 3
    assert main(["sample-conditional", "-r", str(seg_run), "-o", str(tmp_path / "o2"), "--keep-rows", "8"]) == 2
    assert "rows to keep must be in 1..7, got 8" in capsys.readouterr().err
