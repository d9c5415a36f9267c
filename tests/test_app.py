"""`taming app`: loading a run, conditioning examples and their pictures, sampling, the CLI and the page.

Tiny transformer runs (16 px images, 8x8 codes, a one-layer GPT with random weights) are written
as run folders in tmp_path, the layout `taming train` makes.
"""
from __future__ import annotations

import copy
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taming.app import conditioning as cond
from taming.app.drawing import Settings, decode_codes, fast_stride, sample_codes
from taming.app.loading import find_runs, load_run, resolve_run
from taming.app.pictures import condition_picture, describe_run, enlarged, png_bytes, to_pixels
from taming.checkpoint import CheckpointError, read_state_dict
from taming.cli.app import PAGE
from taming.cli.main import main
from taming.config import ConfigError
from taming.data.codes import write_code_shards
from taming.data.errors import DataError
from taming.data.landscapes import PALETTE, LandscapesValidation
from taming.sampling import generate, sample_window
from helpers import make_run, seg_transformer_config, vqgan_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models

def prefix_config(cond_stage: dict | str, cond_key: str, **params) -> dict:
    """The segmentation config's first stage with a one-code conditioning (a class label or SOS)."""
    config = seg_transformer_config(None, None)
    model = config["model"]["params"]
    model.update(cond_stage_config=cond_stage, cond_stage_key=cond_key, **params)
    model["transformer_config"]["params"]["block_size"] = 64  # 1 conditioning code + 64 image codes - 1
    del config["data"]
    return config


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("seg"), seg_transformer_config(None, None), "seg")


@pytest.fixture(scope="module")
def loaded(seg_run):
    return load_run(resolve_run(str(seg_run)))


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    labelator = {"target": "taming.modules.util.Labelator", "params": {"n_classes": 5}}
    run = make_run(tmp_path_factory.mktemp("cls"), prefix_config(labelator, "class_label"), "cls")
    return load_run(resolve_run(str(run)))


# ---- loading ---------------------------------------------------------------------------------------
def test_loads_a_run_folder_a_checkpoint_and_a_config(seg_run, loaded, tmp_path):
    saved = read_state_dict(seg_run / "checkpoints" / "last.ckpt")
    model = loaded.model
    assert not model.training and cond.condition_kind(model) == "segmentation"
    assert loaded.window == (8, 8) and loaded.factor == 2  # 16 px crops, one downsampling
    assert describe_run(loaded).startswith("conditioning: segmentation; training window 8x8 codes (16x16 px)")
    for key in ("transformer.head.weight", "first_stage_model.decoder.conv_out.weight",
                "cond_stage_model.encoder.conv_in.weight"):
        assert torch.equal(model.state_dict()[key], saved[key]), key
    # the checkpoint inside the run folder finds the run's configs; one elsewhere needs --config
    ckpt = seg_run / "checkpoints" / "last.ckpt"
    assert resolve_run(str(ckpt)).configs == resolve_run(str(seg_run)).configs
    moved = tmp_path / "model.ckpt"
    moved.write_bytes(ckpt.read_bytes())
    config = resolve_run(str(seg_run)).configs[0]
    source = resolve_run(str(moved), [config])
    assert source.ckpt == str(moved) and source.configs == (config,)
    assert torch.equal(load_run(source).model.transformer.head.weight, saved["transformer.head.weight"])
    assert find_runs(seg_run.parent) == [seg_run] and find_runs(tmp_path / "nothing") == []


def test_user_errors_name_the_path(seg_run, tmp_path):
    missing = tmp_path / "logs" / "no_such_run"
    with pytest.raises(ConfigError, match=f"run folder or checkpoint not found: {missing}"):
        resolve_run(str(missing))
    first_stage = make_run(tmp_path, vqgan_config(), "vqgan")
    with pytest.raises(ConfigError, match=f"{first_stage}: the model is .*VQModel, not a Net2NetTransformer"):
        load_run(resolve_run(str(first_stage)))
    broken = make_run(tmp_path, seg_transformer_config(None, None), "broken")
    (broken / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {broken / 'checkpoints' / 'last.ckpt'}"):
        load_run(resolve_run(str(broken)))
    loose = tmp_path / "loose.ckpt"
    loose.write_bytes(b"")
    with pytest.raises(ConfigError, match=f"checkpoint {loose} is not in a run folder: pass --config"):
        resolve_run(str(loose))
    with pytest.raises(ConfigError, match="no model given"):
        resolve_run(None)


# ---- conditioning and pictures ---------------------------------------------------------------------
def test_landscape_example_rendered_at_the_output_size(loaded):
    assert cond.example_sources(loaded) == [cond.VALIDATION, cond.LANDSCAPES]
    example = cond.landscape_example(loaded, 3, (16, 40))
    assert example.condition.shape == (1, 8, 16, 40) and example.image.shape == (1, 3, 16, 40)
    assert torch.equal(example.condition.sum(1), torch.ones(1, 16, 40))  # one-hot
    picture = condition_picture(loaded, example)
    assert picture.shape == (16, 40, 3) and picture.dtype == np.uint8
    palette = {tuple(c) for c in np.round((PALETTE + 1) * 127.5).astype(np.uint8)}
    labels = example.condition[0].argmax(0).numpy()
    for label in np.unique(labels):  # each label shown in its palette colour
        colours = {tuple(c) for c in picture[labels == label]}
        assert colours == {tuple(np.round((PALETTE[label] + 1) * 127.5).astype(np.uint8))}
    assert {tuple(c) for c in picture.reshape(-1, 3)} <= palette
    real = to_pixels(example.image)
    np.testing.assert_array_equal(real, np.round((example.image[0].permute(1, 2, 0).numpy() + 1) * 127.5))
    assert enlarged(picture).shape == (16 * 16, 40 * 16, 3)
    assert Image.open(io.BytesIO(png_bytes(picture))).size == (40, 16)


def test_validation_example_is_the_dataset_item_fitted_to_the_size(loaded):
    examples = cond.validation_examples(loaded)
    assert len(examples) == 2  # the config's LandscapesValidation(size=16, length=2)
    item = LandscapesValidation(size=16, length=2)[1]
    example = cond.dataset_example(loaded, examples, 1, (16, 16))
    np.testing.assert_array_equal(example.image[0].permute(1, 2, 0).numpy(), item["image"])
    np.testing.assert_array_equal(example.condition[0].permute(1, 2, 0).numpy(), item["segmentation"])
    wide = cond.dataset_example(loaded, examples, 1, (16, 32))  # larger output: the map is stretched
    assert wide.condition.shape == (1, 8, 16, 32) and torch.equal(wide.condition.sum(1), torch.ones(1, 16, 32))
    torch.testing.assert_close(wide.condition[..., ::2], example.condition, rtol=0, atol=0)
    assert example.image.shape == wide.image.shape == (1, 3, 16, 16)  # the real image stays as it was
    codes = cond.encode_condition(loaded, example)
    assert codes.codes.shape == (1, 64) and codes.grid.shape == (1, 8, 8)
    assert torch.equal(codes.grid.reshape(1, -1), codes.codes) and int(codes.codes.max()) < 8  # 8 seg codes
    with pytest.raises(DataError, match=f"{loaded.source.name}: validation examples have no 'segmentation'"):
        cond.dataset_example(loaded, [{"image": item["image"]}], 0, (16, 16))


def test_pre_tokenized_validation_codes_are_decoded(seg_run, loaded, tmp_path):
    """A run trained on `taming tokenize` shards (the demo's): examples are decoded back to pixels."""
    g = torch.Generator().manual_seed(0)
    items = [{"z": torch.randint(0, 16, (8, 8), generator=g), "c": torch.randint(0, 8, (8, 8), generator=g)}
             for _ in range(3)]
    shards = write_code_shards(str(tmp_path / "validation-%06d.tar"), items, maxcount=2)
    run = copy.copy(loaded)
    run.config = copy.deepcopy(loaded.config)
    run.config.data.params.validation = {"target": "taming.data.codes.CodeShards",
                                         "params": {"urls": shards, "shuffle": 0, "shuffle_shards": False}}
    examples = cond.validation_examples(run)
    assert len(examples) == 3
    example = cond.dataset_example(run, examples, 2, (16, 16))
    fs, seg = loaded.model.first_stage_model, loaded.model.cond_stage_model
    torch.testing.assert_close(example.image, fs.decode_codes(items[2]["z"][None]))
    labels = seg.decode_codes(items[2]["c"][None]).argmax(1)
    assert example.condition.shape == (1, 8, 16, 16) and torch.equal(example.condition.argmax(1), labels)
    assert "pre-tokenized" in example.caption


# ---- sampling ---------------------------------------------------------------------------------------
def test_sampling_is_seeded_sized_and_equals_taming_sampling(loaded):
    example = cond.landscape_example(loaded, 0, (16, 16))
    condition = cond.encode_condition(loaded, example)
    settings = Settings((8, 8), top_k=5, temperature=0.9, seed=3)
    fractions = []
    codes = sample_codes(loaded, condition, settings, fractions.append)
    assert codes.shape == (1, 8, 8) and codes.dtype == torch.long
    assert torch.equal(codes, sample_codes(loaded, condition, settings))
    assert not torch.equal(codes, sample_codes(loaded, condition, Settings((8, 8), top_k=5, temperature=0.9, seed=4)))
    direct = generate(loaded.model.transformer, condition.codes, 64, temperature=0.9, top_k=5,
                      generator=torch.Generator().manual_seed(3))
    assert torch.equal(codes.reshape(1, -1), direct)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) == 64  # 64 codes: each a new percent
    image = decode_codes(loaded, codes)
    assert image.shape == (1, 3, 16, 16) and image.min() >= -1 and image.max() <= 1


def test_larger_outputs_use_the_sliding_window(loaded):
    example = cond.landscape_example(loaded, 1, (16, 24))
    condition = cond.encode_condition(loaded, example)
    assert condition.grid.shape == (1, 8, 12)
    gpt = loaded.model.transformer
    assert fast_stride(loaded.window) == 2
    for fast, stride in ((False, None), (True, 2)):
        settings = Settings((8, 12), top_k=4, temperature=1.2, seed=7, fast=fast)
        codes = sample_codes(loaded, condition, settings)
        direct = sample_window(gpt, condition.grid, window=(8, 8), top_k=4, temperature=1.2, stride=stride,
                               generator=torch.Generator().manual_seed(7))
        assert codes.shape == (1, 8, 12) and torch.equal(codes, direct)
        assert torch.equal(codes, sample_codes(loaded, condition, settings))
    assert decode_codes(loaded, codes).shape == (1, 3, 16, 24)
    with pytest.raises(ValueError, match="smaller than the training window 8x8"):
        sample_codes(loaded, condition, Settings((8, 6)))
    with pytest.raises(ValueError, match="a \\(8, 12\\) grid, not the 8x16 of the output"):
        sample_codes(loaded, condition, Settings((8, 16)))


def test_reduced_precision_sampling_is_seeded_too(loaded):
    condition = cond.encode_condition(loaded, cond.landscape_example(loaded, 2, (16, 16)))
    for precision in ("bf16", "int8"):
        settings = Settings((8, 8), top_k=8, seed=1, precision=precision)
        codes = sample_codes(loaded, condition, settings)
        assert codes.shape == (1, 8, 8) and torch.equal(codes, sample_codes(loaded, condition, settings))


def test_class_conditional_model(class_run):
    assert cond.condition_kind(class_run.model) == "class" and cond.example_sources(class_run) == [cond.CLASS]
    example = cond.class_example(class_run, 3)
    assert condition_picture(class_run, example) is None and example.caption == "class 3"
    condition = cond.encode_condition(class_run, example)
    assert condition.codes.tolist() == [[3]] and condition.grid is None
    gpt = class_run.model.transformer
    codes = sample_codes(class_run, condition, Settings((8, 8), top_k=6, seed=2))
    assert torch.equal(codes.reshape(1, -1), generate(gpt, condition.codes, 64, top_k=6,
                                                      generator=torch.Generator().manual_seed(2)))
    wide = sample_codes(class_run, condition, Settings((8, 16), top_k=6, seed=2, fast=True))
    direct = sample_window(gpt, None, torch.zeros(1, 8, 16, dtype=torch.long), window=(8, 8), top_k=6, stride=2,
                           prefix=condition.codes, generator=torch.Generator().manual_seed(2))
    assert wide.shape == (1, 8, 16) and torch.equal(wide, direct)
    with pytest.raises(ValueError, match="class 5 is not one of the model's 5 classes"):
        cond.class_example(class_run, 5)


def test_unconditional_model(tmp_path):
    run = load_run(resolve_run(str(make_run(tmp_path, prefix_config("__is_unconditional__", "image"), "uncond"))))
    assert cond.condition_kind(run.model) == "unconditional" and cond.example_sources(run) == []
    condition = cond.encode_condition(run, cond.unconditional_example())
    assert condition.codes.tolist() == [[0]] and condition.grid is None  # the SOS token
    codes = sample_codes(run, condition, Settings((12, 8), seed=5))
    direct = sample_window(run.model.transformer, None, torch.zeros(1, 12, 8, dtype=torch.long), window=(8, 8),
                           top_k=100, prefix=condition.codes, generator=torch.Generator().manual_seed(5))
    assert codes.shape == (1, 12, 8) and torch.equal(codes, direct)
    assert decode_codes(run, codes).shape == (1, 3, 24, 16)


# ---- command line -----------------------------------------------------------------------------------
def test_cli_checks_arguments_then_runs_streamlit(seg_run, tmp_path, monkeypatch, capsys):
    launched = []
    monkeypatch.setattr("subprocess.call", lambda command: launched.append(command) or 0)
    assert main(["app", "--logdir", str(seg_run), "--port", "8600"]) == 0
    assert launched == [[sys.executable, "-m", "streamlit", "run", str(PAGE), "--server.port", "8600", "--",
                         "--logdir", str(seg_run)]]
    missing = tmp_path / "missing_run"
    assert main(["app", "--logdir", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"taming app: error: run folder or checkpoint not found: {missing} (absolute: {missing})"]
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "streamlit" else real_find_spec(name))
    assert main(["app", "--logdir", str(seg_run)]) == 2
    assert capsys.readouterr().err.strip() == "taming app: error: streamlit is not installed: pip install taming[app]"
    assert len(launched) == 1


# ---- the page ---------------------------------------------------------------------------------------
def page(monkeypatch, *args: str):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(sys, "argv", [str(PAGE), *args])
    return AppTest.from_file(str(PAGE), default_timeout=60).run()


def test_page_samples_a_landscape_panorama(seg_run, monkeypatch):
    at = page(monkeypatch, "--logdir", str(seg_run))
    assert not at.exception and not at.error
    assert at.radio(key="source").options == [cond.VALIDATION, cond.LANDSCAPES]
    assert len(at.image) == 2  # the conditioning and the real image
    at.radio(key="source").set_value(cond.LANDSCAPES)
    at.number_input(key="width_8").set_value(12)
    at.number_input(key="seed").set_value(3)
    at.run()
    at.checkbox(key="fast").check()  # enabled once the output is larger than the training window
    at.run()
    at.button(key="sample_button").click().run()
    assert not at.exception and not at.error
    assert len(at.image) == 3
    sample = at.session_state["sample"]
    assert sample["pixels"].shape == (16, 24, 3) and sample["file_name"] == "sample_8x12_seed3.png"
    caption = at.image[2].captions[0]
    assert "landscape 0; 8x12 codes (16x24 px), top-k 16, temperature 1, seed 3, auto, fast" in caption
    assert at.get("download_button")  # the PNG of that sample
    # the same sample from the functions
    run = load_run(resolve_run(str(seg_run)))
    condition = cond.encode_condition(run, cond.landscape_example(run, 0, (16, 24)))
    codes = sample_codes(run, condition, Settings((8, 12), top_k=16, seed=3, fast=True, precision="auto"))
    np.testing.assert_array_equal(sample["pixels"], to_pixels(decode_codes(run, codes)))


def test_page_reports_a_missing_run_without_a_traceback(seg_run, tmp_path, monkeypatch):
    at = page(monkeypatch, "--logdir", str(seg_run))
    missing = tmp_path / "gone"
    at.text_input(key="target").input(str(missing)).run()
    assert not at.exception
    assert [e.value for e in at.error] == [f"run folder or checkpoint not found: {missing} (absolute: {missing})"]
    assert not at.button  # nothing to sample from


def test_page_samples_a_chosen_class(class_run, monkeypatch):
    at = page(monkeypatch, "--logdir", class_run.source.name)
    assert at.radio(key="source").options == [cond.CLASS] and not at.image  # a class has no picture
    at.number_input(key="class").set_value(2).run()
    assert at.markdown[0].value == "**Conditioning:** class 2"
    at.button(key="sample_button").click().run()
    assert not at.exception and not at.error and len(at.image) == 1
    assert at.session_state["sample"]["pixels"].shape == (16, 16, 3)
    assert at.image[0].captions[0].startswith("class 2; 8x8 codes (16x16 px), top-k 16")
