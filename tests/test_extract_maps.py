"""`taming extract-depth` / `extract-segmentation` on a small folder of photos (S-FLCKR and D-RIN
examples, shrunk, copied at test time): the layout and encodings the datasets read, resume, an
unreadable image, and the maps training a segmentation- and a depth-conditioned transformer with
the original's configs (data paths and tiny sizes on the command line).

The networks are the real architectures made shallow (one block per stage; MiDaS's input side 64
instead of 384) with seeded weights, so that this stays seconds; tests/test_prep_parity.py holds the
full-size networks against the reference code."""
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import ROOT
from seeded_weights import seeded_state_dict
from taming.cli.main import main as taming
from taming.data.imageio import read_depth, read_labels
from taming.prep import deeplab, midas
from taming.prep.maps import DepthMaker, SegmentationMaker

SMALL_MIDAS = dict(features=32, blocks=(1, 1, 1, 1))
SMALL_DEEPLAB = (1, 1, 1, 1)


def shrink_copy(source, dest, width):
    image = Image.open(source).convert("RGB")
    dest.parent.mkdir(parents=True, exist_ok=True)
    image.resize((width, round(image.height * width / image.width)), Image.BICUBIC).save(dest, quality=95)


@pytest.fixture
def small_networks(tmp_path, monkeypatch):
    monkeypatch.setattr(DepthMaker, "build", classmethod(lambda cls: midas.MidasNet(**SMALL_MIDAS)))
    monkeypatch.setattr(SegmentationMaker, "build", classmethod(
        lambda cls: deeplab.MSC(deeplab.DeepLabV2(blocks=SMALL_DEEPLAB))))
    monkeypatch.setattr(midas, "NET_SIDE", 64)
    torch.save(seeded_state_dict(midas.MidasNet(**SMALL_MIDAS).state_dict()), tmp_path / "midas.pt")
    torch.save(seeded_state_dict(deeplab.MSC(deeplab.DeepLabV2(blocks=SMALL_DEEPLAB)).state_dict()),
               tmp_path / "deeplab.pt")
    return tmp_path


def tiny_stage(node: str, in_channels: int | None = None) -> list[str]:
    p = f"model.params.{node}.params"
    out = [f"{p}.ckpt_path=null", f"{p}.embed_dim=8", f"{p}.n_embed=16", f"{p}.ddconfig.ch=32",
           f"{p}.ddconfig.ch_mult=[1,1,1]", f"{p}.ddconfig.num_res_blocks=1", f"{p}.ddconfig.attn_resolutions=[]",
           f"{p}.ddconfig.z_channels=8", f"{p}.ddconfig.resolution=32"]
    return out


TINY_GPT = [f"model.params.transformer_config.params.{o}" for o in
            ("vocab_size=16", "block_size=128", "n_layer=1", "n_head=2", "n_embd=16")]
QUIET = ["--max_steps", "2", "lightning.trainer.enable_progress_bar=false", "lightning.trainer.enable_model_summary=false",
         "lightning.trainer.num_sanity_val_steps=0", "lightning.trainer.limit_val_batches=1",
         "lightning.callbacks.image_logger=null", "data.params.num_workers=0"]


def test_segmentation_maps_train_a_segmentation_conditioned_transformer(small_networks, shared_dir, capsys,
                                                                        monkeypatch, one_thread):
    tmp = small_networks
    root = tmp / "sflckr"
    relpaths = (shared_dir / "data" / "sflckr" / "examples.txt").read_text().split()[:4]
    for rel in relpaths:
        shrink_copy(shared_dir / "data" / "sflckr" / "images" / rel, root / "images" / rel, 48)
    (root / "examples.txt").write_text("\n".join(relpaths) + "\n")
    args = ["extract-segmentation", str(root / "images"), "-o", str(root / "segmentations"),
            "--weights", str(tmp / "deeplab.pt"), "--quiet", "--workers", "0", "--precision", "fp32"]
    assert taming(args) == 0
    assert "4 maps written" in capsys.readouterr().out
    maker = SegmentationMaker.from_weights(tmp / "deeplab.pt")
    for rel in relpaths:
        png = root / "segmentations" / (os.path.splitext(rel)[0] + ".png")
        assert Image.open(png).mode == "L"
        pixels = torch.from_numpy(np.array(Image.open(root / "images" / rel))).permute(2, 0, 1)[None]
        np.testing.assert_array_equal(read_labels(png), maker(pixels)[0])  # what the network says, at image size
    # resume: nothing redone; a removed map is made again; an unreadable photo is named, the rest go on
    (root / "segmentations" / (os.path.splitext(relpaths[1])[0] + ".png")).unlink()
    (root / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    assert taming(args) == 0
    out = capsys.readouterr().out
    assert "1 maps written" in out and "3 already there" in out and "1 unreadable images skipped" in out
    assert "broken.jpg" in out
    (root / "images" / "broken.jpg").unlink()

    monkeypatch.chdir(tmp)
    node = "model.params.cond_stage_config.params"
    data = [f"data.params.{s}.params.{k}" for s in ("train", "validation") for k in ("root=" + str(root), "size=32",
                                                                                       "crop_size=32")]
    assert taming(["train", "--base", str(ROOT / "configs" / "sflckr_transformer.yaml"), "-t", "True", *QUIET,
                   *tiny_stage("first_stage_config"), *tiny_stage("cond_stage_config"), *TINY_GPT, *data]) == 0
    assert any((tmp / "logs").glob("*_sflckr_transformer/checkpoints/last.ckpt"))
    assert node  # the cond stage is the original's VQ of the 182-class maps, made tiny


def test_depth_maps_train_a_depth_conditioned_transformer(small_networks, shared_dir, capsys, monkeypatch,
                                                           one_thread):
    tmp = small_networks
    imagenet = tmp / "imagenet"  # the ImageNet layout the D-RIN config reads, with the D-RIN example photos
    relpaths = (shared_dir / "data" / "drin" / "examples.txt").read_text().split()[:5]
    for k, rel in enumerate(relpaths):
        shrink_copy(shared_dir / "data" / "drin" / "images" / rel, imagenet / ("val" if k == 4 else "train") / rel, 40)
    wnids = sorted({rel.split("/")[0] for rel in relpaths})
    synsets = {i: f"n{i:08d}" for i in range(1000)}
    synsets.update({151 + k: wnid for k, wnid in enumerate(wnids)})  # RIN's classes start at 151 (dogs)
    (imagenet / "index_synset.yaml").write_text("".join(f"{i}: {w}\n" for i, w in synsets.items()))
    assert taming(["extract-depth", str(imagenet), "-o", str(tmp / "depth"), "--weights", str(tmp / "midas.pt"),
                   "--quiet", "--workers", "0", "--batch-size", "2", "--precision", "fp32"]) == 0
    assert "5 maps written" in capsys.readouterr().out
    maker = DepthMaker.from_weights(tmp / "midas.pt")
    for k, rel in enumerate(relpaths):
        split = "val" if k == 4 else "train"
        png = tmp / "depth" / split / (os.path.splitext(rel)[0] + ".png")
        image = Image.open(imagenet / split / rel)
        assert Image.open(png).mode == "RGBA" and Image.open(png).size == image.size
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
        np.testing.assert_allclose(read_depth(png), maker(pixels)[0], rtol=1e-5, atol=1e-6)  # float32 packed

    monkeypatch.chdir(tmp)
    data = [f"data.params.{s}.params.{k}" for s in ("train", "validation") for k in
            (f"root={tmp / 'depth'}", f"data_root={imagenet}", "size=32")]
    cond = tiny_stage("cond_stage_config")
    assert taming(["train", "--base", str(ROOT / "configs" / "drin_transformer.yaml"), "-t", "True", *QUIET,
                   *tiny_stage("first_stage_config"), *cond, *TINY_GPT, *data]) == 0
    assert any((tmp / "logs").glob("*_drin_transformer/checkpoints/last.ckpt"))
    shutil.rmtree(tmp / "logs")


def test_depth_png_encoding_is_the_datasets(shared_dir, tmp_path):
    """A real D-RIN depth PNG (MiDaS output packed by the original) decodes and re-encodes to the same bytes."""
    from taming.data.imageio import depth_to_rgba
    from taming.prep.maps import save_depth

    png = next((shared_dir / "data" / "drin" / "depth").rglob("*.png"))
    depth = read_depth(png)
    save_depth(depth, tmp_path / "again.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "again.png")), np.asarray(Image.open(png)))
    np.testing.assert_array_equal(depth_to_rgba(depth), np.asarray(Image.open(png)))


def test_what_to_extract_from_a_folder_a_list_or_a_config_split(tmp_path, shared_dir):
    from taming.data.errors import DataError
    from taming.prep.inputs import Item, collect

    images = shared_dir / "data" / "sflckr" / "images"
    rel = (shared_dir / "data" / "sflckr" / "examples.txt").read_text().split()
    folder = collect(str(images))
    assert len(folder) == 25 and Item(str(images / rel[0]), rel[0][:-4] + ".png") in folder
    (tmp_path / "list.txt").write_text("\n".join(rel[:2]) + "\n")
    assert collect(str(tmp_path / "list.txt"), root=str(images)) == [Item(str(images / r), r[:-4] + ".png")
                                                                       for r in rel[:2]]
    config = tmp_path / "data.yaml"
    config.write_text("data:\n  params:\n    validation:\n      target: taming.data.imagenet.ImageNetValidation\n"
                      "      params: {root: set/on/the/command/line}\n")
    (tmp_path / "imagenet").mkdir()
    os.symlink(shared_dir / "data" / "drin" / "images", tmp_path / "imagenet" / "val")
    items = collect(str(config), split="validation", overrides=[f"data.params.validation.params.root={tmp_path / 'imagenet'}"])
    drin = (shared_dir / "data" / "drin" / "examples.txt").read_text().split()
    assert sorted(i.out for i in items) == sorted(r[:-5] + ".png" for r in drin)  # <wnid>/<name>.png, its relpath
    (tmp_path / "clash").mkdir()
    for name in ("a.jpg", "a.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / "clash" / name)
    with pytest.raises(DataError, match="would both write a.png"):
        collect(str(tmp_path / "clash"))


def test_user_errors_are_one_line(tmp_path, shared_dir, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("TAMING_DEEPLAB", raising=False)
    images = str(shared_dir / "data" / "sflckr" / "images")
    for argv, needle in (
            ([images, "-o", str(tmp_path / "o")], "Fetch it with `taming weights fetch deeplab`"),
            ([images, "-o", str(tmp_path / "o"), "--precision", "int4"], "invalid choice: 'int4'"),
            ([str(tmp_path / "nowhere"), "-o", str(tmp_path / "o")], "no such image folder, image list or config"),
            ([images, "-o", str(tmp_path / "o"), "data.params.x=1"], "go with a config .yaml only"),
            ([images, "-o", str(tmp_path / "o"), "--device", "cuda:7"], "--device cuda:7: no such GPU here")):
        assert taming(["extract-segmentation", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("taming extract-segmentation: error: ") and needle in err[0], err
