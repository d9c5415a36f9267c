"""Robust image reading (every mode, every kind of bad file) and the paired transforms."""
import io
import random

import numpy as np
import pytest
from PIL import Image

from taming.data.errors import DataError, UnreadableFile
from taming.data.imageio import (depth_to_rgba, normalize_depth, read_depth, read_labels, read_rgb,
                                 rgba_to_depth, to_float_image)
from taming.data.transforms import PairedTransform, smaller_side_shape


def gradient(h=20, w=30):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) % 256], -1).astype(np.uint8)


def test_rgb_png_round_trip(tmp_path):
    rgb = gradient()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out, rgb)


def test_grayscale_replicated(tmp_path):
    gray = gradient()[..., 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = read_rgb(tmp_path / "g.png")
    assert out.shape == (20, 30, 3)
    for k in range(3):
        np.testing.assert_array_equal(out[..., k], gray)


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red channel
    rgba[:, :2, 3] = 255  # left half opaque, right half fully transparent
    rgba[0, 0, 3] = 128  # one half-transparent pixel
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    out = read_rgb(tmp_path / "t.png")
    np.testing.assert_array_equal(out[1, 1], [200, 0, 0])
    np.testing.assert_array_equal(out[1, 3], [255, 255, 255])  # transparent -> white
    a = 128 / 255
    np.testing.assert_array_equal(out[0, 0], np.round([200 * a + 255 * (1 - a), 255 * (1 - a), 255 * (1 - a)]))


def test_16bit_scaled_to_8bit(tmp_path):
    values = np.array([[0, 257 * 100], [65535, 257 * 7]], np.uint16)
    Image.fromarray(values).save(tmp_path / "w.png")
    assert Image.open(tmp_path / "w.png").mode.startswith("I")
    out = read_rgb(tmp_path / "w.png")
    np.testing.assert_array_equal(out[..., 0], [[0, 100], [255, 7]])


def test_palette_and_cmyk(tmp_path):
    rgb = gradient()
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16).save(tmp_path / "p.png")
    palette_img = Image.open(tmp_path / "p.png")
    assert palette_img.mode == "P"
    np.testing.assert_array_equal(read_rgb(tmp_path / "p.png"), np.asarray(palette_img.convert("RGB")))
    # palette with a transparent index composites on white
    p = Image.new("P", (2, 1))
    p.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    p.info["transparency"] = 1
    p.save(tmp_path / "pt.png", transparency=1)
    np.testing.assert_array_equal(read_rgb(tmp_path / "pt.png"), [[[10, 20, 30], [255, 255, 255]]])
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg")
    out = read_rgb(tmp_path / "c.jpg")
    assert out.shape == (20, 30, 3) and np.abs(out.astype(int) - rgb).mean() < 20


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "random", "missing"])
def test_bad_files_raise_unreadable(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not an image\n")
    elif kind == "truncated":
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(1).integers(0, 255, 500, dtype=np.uint8).tobytes())
    with pytest.raises(UnreadableFile) as info:
        read_rgb(path)
    assert str(path) in str(info.value) and isinstance(info.value, DataError)


def test_labels_modes(tmp_path):
    labels = (np.arange(12).reshape(3, 4) * 20).astype(np.uint8)
    Image.fromarray(labels, mode="L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_labels(tmp_path / "l.png"), labels)
    Image.fromarray(gradient()).save(tmp_path / "rgb.png")
    with pytest.raises(UnreadableFile, match="single-channel"):
        read_labels(tmp_path / "rgb.png")


def test_depth_packing_round_trip(tmp_path):
    depth = np.array([[0.5, 1234.25], [-3.0, 1e-3]], np.float32)
    rgba = depth_to_rgba(depth)
    assert rgba.shape == (2, 2, 4) and rgba.dtype == np.uint8
    # little-endian IEEE 754 by hand: 0.5 = 0x3F000000 -> bytes 00 00 00 3F
    np.testing.assert_array_equal(rgba[0, 0], [0, 0, 0, 0x3F])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "d.png")
    np.testing.assert_array_equal(read_depth(tmp_path / "d.png"), depth)
    np.testing.assert_array_equal(rgba_to_depth(rgba), depth)
    norm = normalize_depth(depth)
    assert norm.min() == -1.0 and norm.max() == 1.0
    np.testing.assert_allclose(norm[0, 0], (0.5 + 3) / (1234.25 + 3) * 2 - 1, rtol=1e-6)


def test_to_float_image_range():
    out = to_float_image(np.array([0, 127, 255], np.uint8))
    np.testing.assert_allclose(out, [-1.0, 127 / 127.5 - 1, 1.0])
    assert out.dtype == np.float32


def test_transform_shapes_and_alignment():
    rng = random.Random(0)
    h, w = 40, 60
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = np.arange(w, dtype=np.uint8)[None, :] * 4  # column ramp
    labels = np.broadcast_to((np.arange(w) // 6).astype(np.uint8)[None, :], (h, w)).copy()
    depth = np.broadcast_to(np.linspace(-1, 1, w, dtype=np.float32)[None, :], (h, w))[..., None].copy()
    t = PairedTransform(size=20, crop_size=16, random_crop=True, random_flip=True, interpolation="nearest")
    assert smaller_side_shape(h, w, 20) == (20, 30)
    for _ in range(10):
        out = t(image, rng=rng, segmentation=labels, depth=depth)
        assert out["image"].shape == (16, 16, 3) and out["segmentation"].shape == (16, 16)
        assert out["depth"].shape == (16, 16, 1)
        # with nearest resizing the column ramp maps each pixel back to its source column: all three agree
        cols = out["image"][0, :, 0].astype(int) // 4
        np.testing.assert_array_equal(out["segmentation"][0], cols // 6)
    centre = PairedTransform(size=20, crop_size=16)(image, segmentation=labels)
    # centre window of the 20x30 resize starts at column (30 - 16) // 2 = 7 -> source column 14
    assert centre["image"][0, 0, 0] // 4 == 14


def test_transform_upscales_small_images():
    t = PairedTransform(size=None, crop_size=32)
    out = t(np.full((10, 12, 3), 7, np.uint8))
    assert out["image"].shape == (32, 32, 3) and t.upscaled == 1
    t2 = PairedTransform(size=8, crop_size=16)  # resized below the crop, then back up to it
    assert t2(np.zeros((30, 40, 3), np.uint8))["image"].shape == (16, 16, 3)
    assert t2.upscaled == 0  # still smaller than the source: nothing was enlarged
    t3 = PairedTransform(size=32)
    assert t3(np.zeros((30, 40, 3), np.uint8))["image"].shape == (32, 32, 3) and t3.upscaled == 1
    with pytest.raises(DataError, match="interpolation"):
        PairedTransform(size=8, interpolation="cubic-ish")
