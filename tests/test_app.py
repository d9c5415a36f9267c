"""`taming app`: loading a run, conditioning examples and their pictures, sampling, the CLI and the page.

Tiny transformer runs (16 px images, 8x8 codes, a one-layer GPT with random weights) are written
as run folders in tmp_path, the layout `taming train` makes.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taming.generation import conditioning as cond
from taming.generation.drawing import (SamplingSpec, decode_codes, fast_stride, image_codes, masked_image, sample_grid,
                                size_warning)
from taming.generation.runs import find_runs, load_run, resolve_run
from taming.generation.pictures import condition_picture, describe_run, download_name, enlarged, png_bytes, to_pixels
from taming.app.uploads import image_upload, segmentation_upload
from taming.checkpoint import CheckpointError, read_state_dict
from taming.app.launch import MAX_UPLOAD_MB, PAGE
from taming.cli.main import main
from taming.config import ConfigError
from taming.data.codes import write_code_shards
from taming.data.errors import DataError
from taming.data.landscapes import PALETTE, LandscapesValidation
from taming.sampling import generate, sample_window
from helpers import make_run, prefix_config, seg_transformer_config, vqgan_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models

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
    settings = SamplingSpec((8, 8), top_k=5, temperature=0.9, seed=3)
    fractions = []
    codes = sample_grid(loaded, condition, settings, fractions.append)
    assert codes.shape == (1, 8, 8) and codes.dtype == torch.long
    assert torch.equal(codes, sample_grid(loaded, condition, settings))
    assert not torch.equal(codes, sample_grid(loaded, condition, SamplingSpec((8, 8), top_k=5, temperature=0.9, seed=4)))
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
        settings = SamplingSpec((8, 12), top_k=4, temperature=1.2, seed=7, fast=fast)
        codes = sample_grid(loaded, condition, settings)
        direct = sample_window(gpt, condition.grid, window=(8, 8), top_k=4, temperature=1.2, stride=stride,
                               generator=torch.Generator().manual_seed(7))
        assert codes.shape == (1, 8, 12) and torch.equal(codes, direct)
        assert torch.equal(codes, sample_grid(loaded, condition, settings))
    assert decode_codes(loaded, codes).shape == (1, 3, 16, 24)
    with pytest.raises(ValueError, match="smaller than the training window 8x8"):
        sample_grid(loaded, condition, SamplingSpec((8, 6)))
    with pytest.raises(ValueError, match="a \\(8, 12\\) grid, not the 8x16 of the output"):
        sample_grid(loaded, condition, SamplingSpec((8, 16)))


def test_reduced_precision_sampling_is_seeded_too(loaded):
    condition = cond.encode_condition(loaded, cond.landscape_example(loaded, 2, (16, 16)))
    for precision in ("bf16", "int8"):
        settings = SamplingSpec((8, 8), top_k=8, seed=1, precision=precision)
        codes = sample_grid(loaded, condition, settings)
        assert codes.shape == (1, 8, 8) and torch.equal(codes, sample_grid(loaded, condition, settings))


def test_class_conditional_model(class_run):
    assert cond.condition_kind(class_run.model) == "class" and cond.example_sources(class_run) == [cond.CLASS]
    example = cond.class_example(class_run, 3)
    assert condition_picture(class_run, example) is None and example.caption == "class 3"
    condition = cond.encode_condition(class_run, example)
    assert condition.codes.tolist() == [[3]] and condition.grid is None
    gpt = class_run.model.transformer
    codes = sample_grid(class_run, condition, SamplingSpec((8, 8), top_k=6, seed=2))
    assert torch.equal(codes.reshape(1, -1), generate(gpt, condition.codes, 64, top_k=6,
                                                      generator=torch.Generator().manual_seed(2)))
    wide = sample_grid(class_run, condition, SamplingSpec((8, 16), top_k=6, seed=2, fast=True))
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
    codes = sample_grid(run, condition, SamplingSpec((12, 8), seed=5))
    direct = sample_window(run.model.transformer, None, torch.zeros(1, 12, 8, dtype=torch.long), window=(8, 8),
                           top_k=100, prefix=condition.codes, generator=torch.Generator().manual_seed(5))
    assert codes.shape == (1, 12, 8) and torch.equal(codes, direct)
    assert decode_codes(run, codes).shape == (1, 3, 24, 16)


# ---- command line -----------------------------------------------------------------------------------
def test_cli_checks_arguments_then_becomes_streamlit(seg_run, tmp_path, monkeypatch, capsys):
    """`taming app` execs Streamlit (kill PID reaches the server) with the safe settings."""
    launched = []
    monkeypatch.setattr("os.execv", lambda path, command: launched.append(command))
    assert main(["app", "--logdir", str(seg_run), "--port", "8600"]) == 0
    command = launched[0]
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(PAGE)]
    assert command[command.index("--"):] == ["--", "--logdir", str(seg_run)]
    for flag in ("--server.address=127.0.0.1", "--server.port=8600", "--server.enableXsrfProtection=true",
                 "--browser.gatherUsageStats=false", "--client.toolbarMode=minimal", "--server.headless=true",
                 "--client.showErrorDetails=none", f"--server.maxUploadSize={MAX_UPLOAD_MB}"):
        assert flag in command, flag
    assert main(["app", "--logdir", str(seg_run), "--address", "0.0.0.0"]) == 0
    assert "--server.address=0.0.0.0" in launched[1] and not any("server.port" in a for a in launched[1])
    missing = tmp_path / "missing_run"
    assert main(["app", "--logdir", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"taming app: error: run folder or checkpoint not found: {missing} (absolute: {missing})"]
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "streamlit" else real_find_spec(name))
    assert main(["app", "--logdir", str(seg_run)]) == 2
    assert capsys.readouterr().err.strip() == "taming app: error: streamlit is not installed: pip install taming[app]"
    assert len(launched) == 2


def test_app_imports_no_cli():
    """The app parses its own arguments: importing it (page aside) loads nothing of taming.cli."""
    import subprocess

    code = ("import sys, taming.app.launch, taming.generation.runs, taming.generation.drawing, taming.generation.pictures, "
            "taming.app.uploads; print(sorted(m for m in sys.modules if m.startswith('taming.cli')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
    assert "taming.cli" not in PAGE.read_text()


# ---- the page ---------------------------------------------------------------------------------------
def page(monkeypatch, *args: str):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(sys, "argv", [str(PAGE), *args])
    return AppTest.from_file(str(PAGE), default_timeout=60).run()


def test_page_samples_a_landscape_panorama(seg_run, monkeypatch):
    at = page(monkeypatch, "--logdir", str(seg_run))
    assert not at.exception and not at.error
    assert at.radio(key="source").options == [cond.VALIDATION, cond.LANDSCAPES, "upload a file"]
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
    assert sample["pixels"].shape == (16, 24, 3)
    assert sample["file_name"].startswith("2026-01-01T00-00-00-seg_landscape-0_8x12_k16_t1_seed3_")
    caption = at.image[1].captions[0]  # beside the conditioning (left) and before the real image (right)
    assert "landscape 0; 8x12 codes (16x24 px), top-k 16, temperature 1, seed 3, auto, fast" in caption
    assert at.image[0].captions[0] == "conditioning: landscape 0" and at.image[2].captions[0] == "real image"
    assert at.get("download_button")  # the PNG of that sample
    # the same sample from the functions
    run = load_run(resolve_run(str(seg_run)))
    condition = cond.encode_condition(run, cond.landscape_example(run, 0, (16, 24)))
    codes = sample_grid(run, condition, SamplingSpec((8, 12), top_k=16, seed=3, fast=True, precision="auto"))
    np.testing.assert_array_equal(sample["pixels"], to_pixels(decode_codes(run, codes)))


def test_page_reports_a_missing_run_without_a_traceback(seg_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the folder the app is started in: typed paths under it may be opened
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


@pytest.fixture(scope="module")
def guided_run(tmp_path_factory):
    """A class-conditional run trained for classifier-free guidance (null token 5)."""
    labelator = {"target": "taming.modules.util.Labelator", "params": {"n_classes": 5}}
    config = prefix_config(labelator, "class_label", cfg_dropout=0.1, cfg_null_token=5)
    return load_run(resolve_run(str(make_run(tmp_path_factory.mktemp("cfg"), config, "cfg"))))


def test_grid_sampler_guidance_and_top_p_are_generates(guided_run):
    condition = cond.encode_condition(guided_run, cond.class_example(guided_run, 2))
    spec = SamplingSpec((8, 8), top_k=None, top_p=0.9, cfg_scale=3.0, seed=4)
    codes = sample_grid(guided_run, condition, spec)
    direct = generate(guided_run.model.transformer, condition.codes, 64, top_p=0.9, cfg_scale=3.0,
                      uncond_codes=torch.full_like(condition.codes, 5), generator=torch.Generator().manual_seed(4))
    assert torch.equal(codes.reshape(1, -1), direct)
    assert not torch.equal(codes, sample_grid(guided_run, condition, dataclasses.replace(spec, cfg_scale=None)))
    with pytest.raises(ValueError, match="guidance samples at the training size 8x8, without completion"):
        sample_grid(guided_run, condition, dataclasses.replace(spec, size=(8, 16)))


def test_page_samples_with_top_p_and_guidance(guided_run, monkeypatch):
    at = page(monkeypatch, "--logdir", guided_run.source.name)
    at.number_input(key="class").set_value(2)
    at.slider(key="top_p").set_value(0.9)
    at.number_input(key="cfg_scale").set_value(3.0)
    at.run()
    at.button(key="sample_button").click().run()
    assert not at.exception and not at.error
    assert "top-p 0.9, temperature 1, guidance 3, seed 0" in at.image[0].captions[0]
    condition = cond.encode_condition(guided_run, cond.class_example(guided_run, 2))
    codes = sample_grid(guided_run, condition, SamplingSpec((8, 8), top_k=16, top_p=0.9, cfg_scale=3.0,
                                                            precision="auto"))
    np.testing.assert_array_equal(at.session_state["sample"]["pixels"], to_pixels(decode_codes(guided_run, codes)))


def test_page_opens_only_paths_under_its_folder(seg_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    at = page(monkeypatch)  # started without a path: only run folders under tmp_path
    assert [e.value for e in at.error] == ["no model given: pass a run folder or checkpoint (--logdir) or "
                                           "--config MODEL.yaml"]
    at.text_input(key="target").input(str(seg_run)).run()
    assert not at.exception and len(at.error) == 1
    assert at.error[0].value.startswith(f"{seg_run} is outside {tmp_path.resolve()}, the folder the app was started in")
    local = make_run(tmp_path, seg_transformer_config(None, None), "local")
    at.text_input(key="target").input(str(local)).run()
    assert not at.exception and not at.error and at.button(key="sample_button")


def test_page_hides_the_sample_of_another_model(seg_run, class_run, monkeypatch):
    at = page(monkeypatch, "--logdir", str(seg_run))
    at.button(key="sample_button").click().run()
    assert at.session_state["sample"] and len(at.image) == 3 and at.get("download_button")
    at.number_input(key="example").set_value(1).run()  # another example: the old sample is not shown beside it
    assert len(at.image) == 2 and not at.get("download_button")
    at.text_input(key="target").input(class_run.source.name).run()  # given at start? no: refused, nothing shown
    assert not at.exception and not at.get("download_button")


def test_extra_configs_merge_over_the_run_and_their_errors_name_them(seg_run, tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("data:\n  params:\n    validation:\n      params: {length: 1}\n")
    run = load_run(resolve_run(str(seg_run), [str(extra)]))
    assert run.config.model.params.transformer_config.params.n_layer == 1  # the run's model ...
    assert len(cond.validation_examples(run)) == 1  # ... with the extra file's change
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  params:\n    transformer_config:\n      params: {n_layerz: 2}\n")
    with pytest.raises(ConfigError, match=f"^extra config {broken} \\(merged over {seg_run}\\): .*n_layerz"):
        load_run(resolve_run(str(seg_run), [str(broken)]))
    config = resolve_run(str(seg_run)).configs[0]
    alone = load_run(resolve_run(None, [config]))  # a config without weights: a random GPT, said so
    assert len(alone.warnings) == 1 and "names no transformer weights" in alone.warnings[0]
    assert run.warnings == []


def test_live_preview_and_completion(loaded):
    example = cond.landscape_example(loaded, 0, (16, 16))
    condition = cond.encode_condition(loaded, example)
    previews = []
    settings = SamplingSpec((8, 8), top_k=5, seed=3)
    codes = sample_grid(loaded, condition, settings, preview=lambda c, mask: previews.append((c, mask)))
    rows_done = [int(mask.sum()) // 8 for _, mask in previews]
    assert rows_done == [2, 4, 6]  # every PREVIEW_ROWS rows, not after the last
    for (grid, mask), rows in zip(previews, rows_done):
        assert torch.equal(mask[0, :rows], torch.ones(rows, 8, dtype=torch.bool)) and not mask[:, rows:].any()
        assert torch.equal(grid[:, :rows], codes[:, :rows]) and not grid[:, rows:].any()
    image = masked_image(loaded, *previews[0])
    assert image.shape == (1, 3, 16, 16) and not image[..., 4:, :].any()  # rows to come are grey (0)
    assert torch.equal(image[..., :4, :], decode_codes(loaded, previews[0][0])[..., :4, :])
    given = image_codes(loaded, example.image)
    assert given.shape == (1, 8, 8)
    fractions = []
    done = sample_grid(loaded, condition, SamplingSpec((8, 8), top_k=5, seed=3, keep_rows=3), fractions.append,
                        given=given)
    assert torch.equal(done[:, :3], given[:, :3]) and len(fractions) == 40 and fractions[-1] == 1.0
    direct = sample_window(loaded.model.transformer, condition.grid, given.clone(), window=(8, 8), start=(3, 0),
                           top_k=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(done, direct)
    with pytest.raises(ValueError, match="rows to keep must be in 1..7"):
        sample_grid(loaded, condition, SamplingSpec((8, 8), keep_rows=8), given=given)
    assert size_warning(loaded, (8, 32)) is None
    assert size_warning(loaded, (8, 40)).startswith("8x40 codes is more than 4x the 8x8-code window")


def test_uploads_become_conditioning_with_clear_errors():
    labels = np.zeros((20, 30), np.uint8)
    labels[10:] = 5
    colours = np.round((PALETTE[labels] + 1) * 127.5).astype(np.uint8)
    for picture in (Image.fromarray(labels, mode="L"), Image.fromarray(colours)):
        seg = segmentation_upload(png_bytes_of(picture), "map.png", 8, (10, 15))
        assert seg.shape == (1, 8, 10, 15) and torch.equal(seg.argmax(1)[0], torch.as_tensor(labels[::2, ::2]).long())
    with pytest.raises(DataError, match="map.png: label values 0..5 do not fit the model's 4 labels"):
        segmentation_upload(png_bytes_of(Image.fromarray(labels, mode="L")), "map.png", 4, (10, 15))
    with pytest.raises(DataError, match="a colour picture cannot be read as 4 labels"):
        segmentation_upload(png_bytes_of(Image.fromarray(colours)), "map.png", 4, (10, 15))
    with pytest.raises(DataError, match="huge.png: 3000x10 px is larger than the 2048 px per side allowed"):
        image_upload(png_bytes_of(Image.new("RGB", (3000, 10))), "huge.png", (16, 16))
    with pytest.raises(DataError, match="bad.png"):
        image_upload(b"not a picture", "bad.png", (16, 16))
    x = image_upload(png_bytes_of(Image.fromarray(colours)), "a.png", (10, 15))
    assert x.shape == (1, 3, 10, 15) and -1 <= x.min() and x.max() <= 1


def test_download_names_differ_for_different_samples():
    a = SamplingSpec((8, 8), top_k=5, seed=3)
    names = {download_name("logs/run_a", "landscape 0", a), download_name("logs/run_b", "landscape 0", a),
             download_name("logs/run_a", "landscape 1", a), download_name("logs/run_a", "landscape 0", SamplingSpec((8, 8), top_k=5, seed=4)),
             download_name("logs/run_a", "landscape 0", SamplingSpec((8, 8), top_k=5, seed=3, precision="bf16"))}
    assert len(names) == 5 and all(n.endswith(".png") and "/" not in n for n in names)


def png_bytes_of(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels and holds none: what a decompression bomb's header says."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def test_uploads_that_are_no_good_picture_are_said_in_plain_words():
    """Issue 20: a text file named .png showed `cannot identify image file <_io.BytesIO object at 0x...>`,
    a decompression bomb Pillow's own text."""
    cases = [
        (b"name,value\n1,2\n", "notes.png", "notes.png is not a picture: upload a PNG or JPEG file"),
        (png_header_only(30000, 30000), "bomb.png", "bomb.png is far too large: it says it holds more than"),
        (png_header_only(5000, 40), "wide.png", "wide.png: 5000x40 px is larger than the 2048 px per side allowed"),
        (png_bytes_of(Image.new("RGB", (64, 64), (9, 99, 199)))[:-30], "cut.png",
         "cut.png could not be read to the end: the picture is damaged or cut short"),
        (b"", "empty.png", "empty.png is empty (0 bytes)"),
    ]
    for data, name, needle in cases:
        for read in (lambda: image_upload(data, name, (16, 16)), lambda: segmentation_upload(data, name, 8, (16, 16))):
            with pytest.raises(DataError) as err:
                read()
            message = str(err.value)
            assert needle in message and "\n" not in message, message
            assert not any(t in message for t in ("BytesIO", "object at 0x", "DOS attack", "Error:")), message


def test_completing_an_upload_says_and_uses_the_map_it_names(seg_run, monkeypatch):
    """Issue 20: the caption said "upload one.png" while landscape 0's map was used, unnamed."""
    picture = png_bytes_of(Image.fromarray(np.round((LandscapesValidation(size=16, length=1)[0]["image"] + 1) * 127.5)
                                           .astype(np.uint8)))
    at = page(monkeypatch, "--logdir", str(seg_run))
    at.radio(key="mode").set_value("complete an image").run()
    at.radio(key="source").set_value("upload a file").run()
    at.get("file_uploader")[0].upload("one.png", picture, "image/png").run()
    at.number_input(key="complete_map").set_value(3).run()
    assert not at.exception and not at.error
    caption = "upload one.png under the map of landscape 3"
    assert at.image[0].captions[0] == f"conditioning: {caption}"
    run = load_run(resolve_run(str(seg_run)))
    map3 = cond.landscape_example(run, 3, (16, 16))
    at.button(key="sample_button").click().run()
    assert not at.exception and not at.error
    sample = at.session_state["sample"]
    assert sample["caption"].startswith(caption)
    # what was drawn: the upload's top rows kept, under landscape 3's map
    image = image_upload(picture, "one.png", (16, 16))
    settings = SamplingSpec((8, 8), top_k=16, seed=0, keep_rows=4)
    codes = sample_grid(run, cond.encode_condition(run, map3), settings, given=image_codes(run, image))
    np.testing.assert_array_equal(sample["pixels"], to_pixels(decode_codes(run, codes)))


def test_the_page_says_in_plain_words_what_is_wrong_with_an_upload(seg_run, monkeypatch):
    at = page(monkeypatch, "--logdir", str(seg_run))
    at.radio(key="source").set_value("upload a file").run()
    at.get("file_uploader")[0].upload("notes.png", b"name,value\n1,2\n", "image/png").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["notes.png is not a picture: upload a PNG or JPEG file (this file's "
                                           "content is no image format, whatever its name says)"]


def test_a_file_outside_the_start_folder_names_the_flag_that_opens_it(seg_run, tmp_path, monkeypatch):
    """Issue 20: an extra config outside the start folder suggested `--logdir /etc/...`."""
    monkeypatch.chdir(tmp_path)
    local = make_run(tmp_path, seg_transformer_config(None, None), "local")
    outside = seg_run.parent / "extra.yaml"
    outside.write_text("data:\n  params:\n    validation:\n      params: {length: 1}\n")
    at = page(monkeypatch, "--logdir", str(local))
    at.text_input(key="configs").input(str(outside)).run()
    assert not at.exception and len(at.error) == 1
    assert at.error[0].value.endswith(f"start `taming app --config {outside}` to open it"), at.error[0].value
    at.text_input(key="configs").input("").run()
    at.text_input(key="target").input(str(seg_run)).run()
    assert at.error[0].value.endswith(f"start `taming app --logdir {seg_run}` to open it"), at.error[0].value


def test_sampling_commands_name_themselves_for_a_first_stage_run(tmp_path, capsys):
    """Issue 20: `taming sample -r <vqgan run>` said "the app samples from transformer runs"."""
    first_stage = make_run(tmp_path, vqgan_config(), "vqgan")
    for command in (["sample", "-n", "1"], ["sample-conditional"]):
        assert main([*command, "-r", str(first_stage), "-o", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"`taming {command[0]}` samples from transformer runs" in err[0], err
        assert "the app" not in err[0] and f"`taming reconstruct -r {first_stage} IMAGE` runs it" in err[0]
