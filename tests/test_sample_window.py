"""`taming sample-window`: one large image from a class-index map, through the sliding window."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taming.generation.conditioning import Example, encode_condition
from taming.cli.main import main
from taming.data.imageio import to_float_image
from taming.generation.files import to_uint8
from taming.generation.runs import transformer_run
from taming.sampling import generate, sample_window
from helpers import make_run, seg_transformer_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("seg"), seg_transformer_config(None, None), "seg")


def label_map(path: Path, w: int, h: int) -> Path:
    labels = (np.arange(w)[None, :] // 6 + np.arange(h)[:, None] // 5) % 8  # stripes of the 8 landscape labels
    Image.fromarray(labels.astype(np.uint8), mode="L").save(path)
    return path


def direct(run, labels: np.ndarray, seed: int, top_k: int, stride=None) -> np.ndarray:
    """What sample-window should compute, from the library functions."""
    c = torch.from_numpy(np.eye(8, dtype=np.float32)[labels]).permute(2, 0, 1)[None]
    condition = encode_condition(run, Example(None, c, "map"))
    g = torch.Generator().manual_seed(seed)
    if tuple(condition.grid.shape[1:]) == run.window:
        codes = generate(run.model.transformer, condition.codes, 64, top_k=top_k, generator=g).reshape(1, 8, 8)
    else:
        codes = sample_window(run.model.transformer, condition.grid, window=(8, 8), top_k=top_k, generator=g, stride=stride)
    return to_uint8(run.model.first_stage_model.decode_codes(codes))[0]


def test_a_panorama_from_a_label_map(seg_run, tmp_path, capsys):
    seg = label_map(tmp_path / "map.png", 48, 16)  # 24x8 codes: three windows wide
    out, gif = tmp_path / "pano.png", tmp_path / "pano.gif"
    assert main(["sample-window", "-r", str(seg_run), "--condition", str(seg), "-o", str(out), "--top-k", "5",
                 "--seed", "2", "--precision", "fp32", "--animation", str(gif), "--frames", "6"]) == 0
    assert "48x16 px (24x8 codes, window 8x8) written to" in capsys.readouterr().out
    picture = np.asarray(Image.open(out))
    run = transformer_run(str(seg_run), device="cpu")
    labels = np.asarray(Image.open(seg))
    np.testing.assert_array_equal(picture, direct(run, labels, 2, 5))
    animation = Image.open(gif)
    assert animation.n_frames == 6 and animation.size == (48, 16)  # 5 partial views and the result
    animation.seek(0)
    first = np.asarray(animation.convert("RGB"))
    assert (first[4:] == 128).all() and not (first[:2] == 128).all()  # 32 of 192 codes: 1 1/3 code rows
    # --size resizes the map (nearest: labels stay labels); --fast moves the window 2 codes at a time
    assert main(["sample-window", "-r", str(seg_run), "-c", str(seg), "--size", "32x16", "-o", str(tmp_path / "s.png"),
                 "-k", "5", "--fast", "--precision", "fp32"]) == 0
    small = np.asarray(Image.fromarray(labels).resize((32, 16), Image.NEAREST))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "s.png")), direct(run, small, 0, 5, stride=2))


def test_a_map_of_the_training_size_is_one_generate_pass(seg_run, tmp_path):
    seg = label_map(tmp_path / "map.png", 16, 16)
    assert main(["sample-window", "-r", str(seg_run), "-c", str(seg), "-o", str(tmp_path / "o.png"), "-k", "3",
                 "--seed", "4", "--precision", "fp32"]) == 0
    run = transformer_run(str(seg_run), device="cpu")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png")),
                                  direct(run, np.asarray(Image.open(seg)), 4, 3))


def test_completion_keeps_the_top_rows_of_the_image(seg_run, tmp_path, capsys):
    """--image PHOTO --keep-rows 3: the sliding window starts after the photo's first 3 code rows."""
    seg = label_map(tmp_path / "map.png", 32, 16)  # 16x8 codes: two windows wide
    photo = np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)  # the output size: no resize
    Image.fromarray(photo).save(tmp_path / "photo.png")
    out = tmp_path / "o.png"
    assert main(["sample-window", "-r", str(seg_run), "-c", str(seg), "--image", str(tmp_path / "photo.png"),
                 "--keep-rows", "3", "-o", str(out), "-k", "5", "--seed", "2", "--precision", "fp32"]) == 0
    run = transformer_run(str(seg_run), device="cpu")
    fs = run.model.first_stage_model
    given = fs.encode_to_codes(torch.from_numpy(to_float_image(photo)).permute(2, 0, 1)[None])
    c = torch.from_numpy(np.eye(8, dtype=np.float32)[np.asarray(Image.open(seg))]).permute(2, 0, 1)[None]
    condition = encode_condition(run, Example(None, c, "map"))
    codes = sample_window(run.model.transformer, condition.grid, given.clone(), window=(8, 8), start=(3, 0),
                          top_k=5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(codes[:, :3], given[:, :3]) and not torch.equal(codes[:, 3:], given[:, 3:])
    np.testing.assert_array_equal(np.asarray(Image.open(out)), to_uint8(fs.decode_codes(codes))[0])
    capsys.readouterr()
    assert main(["sample-window", "-r", str(seg_run), "-c", str(seg), "--keep-rows", "3", "-o", str(out)]) == 2
    assert "completion takes both, --keep-rows >= 1 and the image to complete" in capsys.readouterr().err
    assert main(["sample-window", "-r", str(seg_run), "-c", str(seg), "--image", str(tmp_path / "photo.png"),
                 "--keep-rows", "8", "-o", str(out)]) == 2
    assert "rows to keep must be in 1..7, got 8" in capsys.readouterr().err


def test_map_errors_are_one_line(seg_run, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    Image.fromarray(np.full((16, 16), 9, np.uint8), mode="L").save(bad)
    assert main(["sample-window", "-r", str(seg_run), "-c", str(bad), "-o", str(tmp_path / "o.png")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"taming sample-window: error: label value 9 >= n_labels=8 in {bad}; set n_labels or shift_segmentation "
        "to match the data")
    good = label_map(tmp_path / "good.png", 16, 16)
    assert main(["sample-window", "-r", str(seg_run), "-c", str(good), "--size", "15x16", "-o", str(tmp_path / "o.png")]) == 2
    assert "size 15x16 px: width and height must be positive multiples of 2 px" in capsys.readouterr().err
    assert main(["sample-window", "-r", str(seg_run), "-c", str(good), "--size", "12x16", "-o", str(tmp_path / "o.png")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"taming sample-window: error: {seg_run}: output 8x6 codes is smaller than the training window 8x8")


def test_a_depth_map_is_normalized_resized_and_sampled(tmp_path):
    """A depth-conditioned model: the RGBA-packed float32 PNG of the depth datasets, min-max to [-1, 1]."""
    from helpers import vqgan_config
    from taming.data.imageio import depth_to_rgba, normalize_depth
    from taming.data.transforms import resize_array
    from taming.generation.window import read_condition

    config = seg_transformer_config(None, None)
    vq = vqgan_config()["model"]["params"]
    config["model"]["params"].update(cond_stage_key="depth", cond_stage_config={
        "target": "taming.models.vqgan.VQModel", "params": {
            **vq, "n_embed": 8, "ddconfig": {**vq["ddconfig"], "in_channels": 1, "out_ch": 1},
            "lossconfig": {"target": "taming.modules.losses.DummyLoss"}}})
    run_dir = make_run(tmp_path, config, "depth")
    depth = np.linspace(2.0, 9.0, 12 * 20, dtype=np.float32).reshape(12, 20) ** 1.5
    Image.fromarray(depth_to_rgba(depth), mode="RGBA").save(tmp_path / "depth.png")
    run = transformer_run(str(run_dir), device="cpu")
    c = read_condition(run, str(tmp_path / "depth.png"), (24, 16))
    expected = resize_array(normalize_depth(depth), (16, 24), "bilinear")
    assert c.shape == (1, 1, 16, 24)
    np.testing.assert_allclose(c[0, 0].numpy(), expected, rtol=0, atol=1e-6)
    assert main(["sample-window", "-r", str(run_dir), "-c", str(tmp_path / "depth.png"), "--size", "24x16",
                 "-o", str(tmp_path / "o.png"), "--precision", "fp32"]) == 0
    assert Image.open(tmp_path / "o.png").size == (24, 16)  # 12x8 codes: the sliding window
