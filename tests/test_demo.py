"""`taming demo` and its measurements: map agreement, FD-randconv, code-window crops, landscape crops,
the report page; and the whole pipeline in --quick mode at a few steps per stage."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from taming.cli.main import main
from taming.data.code_crops import CodeCrops
from taming.data.codes import write_code_arrays
from taming.data.errors import DataError
from taming.data.landscapes import ProceduralLandscapes
from taming.eval.map_agreement import fit_segmenter, map_agreement, mean_iou, pixel_accuracy, predict
from taming.eval.random_features import fd_randconv, frechet_distance, kd_randconv, kernel_distance


def test_pixel_accuracy_and_mean_iou_on_known_labels():
    maps = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 2]]])  # (1, 2, 4)
    predicted = torch.tensor([[[0, 1, 1, 1], [0, 0, 1, 1]]])  # two pixels wrong: a 0 and the 2 called 1
    assert pixel_accuracy(predicted, maps).tolist() == [0.75]
    one_hot = torch.nn.functional.one_hot(maps, 4).permute(0, 3, 1, 2)
    assert pixel_accuracy(predicted, one_hot).tolist() == [0.75]  # maps may be one-hot
    # IoU: class 0 3/4, class 1 3/5, class 2 0/1; class 3 is in neither, so it does not count
    assert mean_iou(predicted, maps, 4) == pytest.approx((3 / 4 + 3 / 5 + 0) / 3)
    assert mean_iou(maps, maps, 4) == 1.0
    with pytest.raises(ValueError, match="do not match"):
        pixel_accuracy(predicted, maps[:, :1])


def test_segmenter_trained_on_real_landscapes_labels_held_out_ones_by_their_maps():
    """The map-agreement network: held-out real scenes score far above the same scenes against another
    scene's map, and the same seed gives the same network."""
    def scenes(split, n):
        data = ProceduralLandscapes(size=32, length=n, split=split)
        return [torch.stack([torch.as_tensor(data[i][k]).permute(2, 0, 1) for i in range(n)]) for k in ("image", "segmentation")]

    torch.set_num_threads(2)
    net = fit_segmenter(*scenes("train", 64), n_classes=8, steps=120, seed=3)
    x, seg = scenes("validation", 24)
    real = map_agreement(net, x, seg, 8)
    shuffled = map_agreement(net, x, seg.roll(1, 0), 8)  # every image against another's map
    assert real["pixel_accuracy"].shape == (24,) and 0 <= real["miou"] <= 1
    assert real["pixel_accuracy"].mean() > 0.75 and shuffled["pixel_accuracy"].mean() < real["pixel_accuracy"].mean() - 0.2
    assert real["miou"] > shuffled["miou"] + 0.15
    again = fit_segmenter(*scenes("train", 64), n_classes=8, steps=120, seed=3)
    assert torch.equal(predict(again, x), predict(net, x))


@pytest.mark.slow
def test_randconv_distances_are_zero_for_equal_sets_and_grow_with_blur():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 4))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, a + 1) == pytest.approx(4, rel=1e-6)  # the means differ by 1 in 4 dims
    data = ProceduralLandscapes(size=64, length=96, split="validation")
    x = torch.stack([torch.as_tensor(data[i]["image"]).permute(2, 0, 1) for i in range(96)])
    blurred = torch.nn.functional.avg_pool2d(x, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    real = fd_randconv(x[:48], x[48:])
    assert 1.5 * real < fd_randconv(blurred[:48], x[48:]) and 1.5 * real < fd_randconv(x[:48].clamp(-0.5, 0.5), x[48:])
    assert real == fd_randconv(x[:48], x[48:])  # fixed seed: the same network every call
    kd_real = kd_randconv(x[:48], x[48:])  # unbiased: about 0 between two sets of real images
    assert abs(kd_real) < 0.002 < kd_randconv(x[:48].clamp(-0.5, 0.5), x[48:])
    b = rng.normal(size=(300, 4))
    assert abs(kernel_distance(a, b)) < 0.05 < kernel_distance(a, b + 1)  # unbiased: about 0 for one distribution


def test_landscape_crops_are_windows_of_the_scene():
    full = ProceduralLandscapes(size=64, length=3, split="train")
    crops = ProceduralLandscapes(size=64, length=3, split="train", crop=32)
    for i in range(3):
        rgb, labels = full.render(i)
        crop_rgb, crop_labels = crops.render(i)
        assert crop_rgb.shape == (32, 32, 3)
        hits = [(t, l) for t in range(33) for l in range(33) if np.array_equal(rgb[t:t + 32, l:l + 32], crop_rgb)]
        assert hits and np.array_equal(labels[hits[0][0]:hits[0][0] + 32, hits[0][1]:hits[0][1] + 32], crop_labels)
    with pytest.raises(DataError, match="crop must be in 8..64"):
        ProceduralLandscapes(size=64, crop=65)


def test_code_crops_share_one_window(tmp_path):
    z = torch.arange(2 * 6 * 6).reshape(2, 6, 6)
    write_code_arrays(tmp_path / "codes", z, z + 1000)
    fixed = CodeCrops(tmp_path / "codes", size=4, fixed=True)
    item = fixed[1]
    assert item["z_indices"].shape == (4, 4) and np.array_equal(item["c_indices"], item["z_indices"] + 1000)
    top, left = divmod(int(item["z_indices"][0, 0]) - 36, 6)
    assert np.array_equal(item["z_indices"], z[1, top:top + 4, left:left + 4].numpy())
    assert np.array_equal(fixed[1]["z_indices"], item["z_indices"])  # fixed: the same window every time
    random_windows = {int(CodeCrops(tmp_path / "codes", size=4)[0]["z_indices"][0, 0]) for _ in range(40)}
    assert len(random_windows) > 1
    with pytest.raises(DataError, match="size 7 must be in 1..6"):
        CodeCrops(tmp_path / "codes", size=7)


@pytest.mark.slow
def test_demo_runs_every_stage_and_writes_its_outputs(tmp_path, capsys):
    """A miniature `taming demo --quick` (a few steps per stage): the whole pipeline and its report."""
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--steps", "0.05", "--tokenize-limit", "8", "--samples", "2",
                 "--panorama-width", "64", "--panoramas", "2", "--precision", "fp32", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["vqgan"]["steps"] == 6 and summary["stages"]["transformer"]["steps"] == 4
    assert summary["temperature"] == 0.7 and summary["top_k"] == 20  # the sampling defaults measured in BENCHMARKS.md
    rec = summary["reconstruction"]
    assert 0 < rec["psnr"] < 60 and 0 < rec["ssim"] <= 1 and 1 <= rec["codes_in_use"] <= 256
    assert rec["kd_randconv_samples"] > rec["kd_randconv_real"]  # untrained samples are far from real images
    assert summary["tokenize"]["train_grids"] == 16  # 8 scenes and their mirror images
    bits = summary["likelihood"]
    assert 0 < bits["bits_per_dim"] and bits["uniform_bits_per_dim"] == pytest.approx(8 / 48)
    assert set(summary["map_codes"]) == {"pixel_accuracy", "mean_class_accuracy"}
    assert all(0 <= v <= 1 for v in summary["map_codes"].values())
    agreement = summary["map_agreement"]
    assert set(agreement) >= {"real", "reconstructions", "samples", "panorama"}
    each = agreement.pop("each_panorama")
    assert len(each) == 2 and agreement["panorama"] == pytest.approx(sum(each) / 2)  # the mean over the panoramas
    miou = agreement.pop("miou")
    assert set(miou) == {"real", "reconstructions", "samples", "panorama", "real_panorama"}
    assert all(0 <= v <= 1 for v in [*agreement.values(), *each, *miou.values()]) and agreement["real"] > 0.5
    sizes = {"conditional_samples": (6 * 130 + 2, 130 + 2), "panorama": (130 + 2, 2 * 3 * 130 + 2),  # 2 x (map, sample, real)
             "inputs_and_reconstructions": (4 * 130 + 2, 4 * 130 + 2)}  # 8 held-out images, each with its reconstruction
    for name, size in sizes.items():
        assert Image.open(summary["images"][name]).size == size, name  # 64 px scenes shown x2, 2 px padding
    assert Image.open(summary["images"]["curves"]).size[0] > 300
    page = (out / "index.html").read_text()
    assert "map agreement" in page and "samples/panorama.png" in page and "curves.png" in page
    runs = sorted(p.name.split("_", 1)[1] for p in (out / "logs").iterdir())
    assert runs == ["segvq", "transformer", "vqgan"]
    for name, stage in summary["stages"].items():  # the next stage loads the final weights, not a validation's
        assert torch.load(stage["ckpt"], map_location="cpu", weights_only=False)["global_step"] == stage["steps"], name
    printed = capsys.readouterr().out
    assert "| map agreement |" in printed and f"Everything is under {out}/" in printed

    # --evaluate-only: the same models sampled again (other settings), the report rewritten, no training
    assert main(["demo", "--evaluate-only", "--samples", "2", "--panorama-width", "64", "--panoramas", "1",
                 "--stride", "4", "--precision", "fp32", "--out", str(out)]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["stages"] == summary["stages"] and again["likelihood"] == summary["likelihood"]
    assert len(again["map_agreement"]["each_panorama"]) == 1 and len(list((out / "logs").iterdir())) == 3
    earlier_training = summary["total_seconds"] - summary["evaluation"]["seconds"]
    assert again["total_seconds"] == pytest.approx(earlier_training + again["evaluation"]["seconds"])
    capsys.readouterr()
    assert main(["demo", "--evaluate-only", "--out", str(tmp_path / "nothing")]) == 2
    assert "no finished demo run there" in capsys.readouterr().err


def test_map_reconstruction_scores_pixels_and_classes():
    """Pixel accuracy and the mean of per-class accuracies of the cond stage's decoded maps, on known cases."""
    from taming.demo import map_reconstruction

    labels = torch.tensor([[[0, 0, 0], [0, 0, 0], [1, 1, 2]]])  # (1, 3, 3): class 0 on 6 pixels, 1 on 2, 2 on 1
    maps = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float()  # class 3 absent

    class Lossless:
        def encode(self, m):
            return (m,)

        def decode(self, q):
            return q

    class AlwaysZero(Lossless):
        def decode(self, q):
            out = torch.zeros_like(q)
            out[:, 0] = 1
            return out

    assert map_reconstruction(Lossless(), maps) == {"pixel_accuracy": 1.0, "mean_class_accuracy": 1.0}
    scores = map_reconstruction(AlwaysZero(), maps)
    assert scores["pixel_accuracy"] == pytest.approx(6 / 9)
    assert scores["mean_class_accuracy"] == pytest.approx(1 / 3)  # classes 0, 1, 2 present; only 0 right
