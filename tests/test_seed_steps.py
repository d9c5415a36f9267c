"""The seed README's steps, as a new user types them (with `taming train` for `python main.py`):
symlink data/celebahq (CelebA-HQ .npy files) and data/ffhq (FFHQ images1024x1024), then
`taming train --base configs/faceshq_vqgan.yaml -t True --gpus 0,` and configs/faceshq_transformer.yaml.
A handful of generated files in that layout; the official split lists ship with taming; tiny model
overrides keep it to seconds. `--gpus 0,` on a machine without that GPU is one line."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import ROOT, only_run
from taming.cli.main import main as taming
from taming.data.faceshq import SPLITS
from test_first_stage_losses import fake_lin_state_dict, fake_vgg16_state_dict

TINY_STAGE = ["ddconfig.ch=32", "ddconfig.ch_mult=[1,1,1]", "ddconfig.num_res_blocks=1", "ddconfig.attn_resolutions=[]",
              "ddconfig.z_channels=8", "ddconfig.resolution=32", "embed_dim=8", "n_embed=16"]
TINY_DATA = ["data.params.batch_size=2", "data.params.num_workers=0"] + [
    f"data.params.{split}.params.{key}=32" for split in ("train", "validation") for key in ("size", "crop_size")]
QUIET = ["lightning.trainer.enable_progress_bar=false", "lightning.trainer.enable_model_summary=false",
         "lightning.trainer.num_sanity_val_steps=0", "lightning.trainer.limit_val_batches=1",
         "lightning.callbacks.image_logger=null"]


def first_names(list_name: str, n: int) -> list[str]:
    with open(os.path.join(SPLITS, list_name)) as f:
        return [next(f).strip() for _ in range(n)]


@pytest.fixture
def faces_checkout(tmp_path, monkeypatch):
    """A user's folder: configs/ of the project, data/celebahq and data/ffhq symlinked to downloads
    holding a few files the official lists name (FFHQ in its 1000-per-folder layout), LPIPS files."""
    rng = np.random.default_rng(0)
    celeba = tmp_path / "downloads" / "celeba_hq"
    ffhq = tmp_path / "downloads" / "ffhq" / "images1024x1024"
    celeba.mkdir(parents=True)
    for name in first_names("celebahqtrain.txt", 3) + first_names("celebahqvalidation.txt", 1):
        np.save(celeba / name, rng.integers(0, 256, (1, 3, 24, 24), dtype=np.uint8))
    for name in first_names("ffhqtrain.txt", 3) + first_names("ffhqvalidation.txt", 1):
        folder = ffhq / f"{int(name[:-4]) // 1000 * 1000:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / name)
    user = tmp_path / "user"
    (user / "data").mkdir(parents=True)
    os.symlink(ROOT / "configs", user / "configs")
    os.symlink(celeba, user / "data" / "celebahq")
    os.symlink(ffhq, user / "data" / "ffhq")
    torch.save(fake_vgg16_state_dict(), tmp_path / "vgg16.pth")
    torch.save(fake_lin_state_dict(), tmp_path / "vgg.pth")
    monkeypatch.setenv("TAMING_VGG16", str(tmp_path / "vgg16.pth"))
    monkeypatch.setenv("TAMING_LPIPS", str(tmp_path / "vgg.pth"))
    monkeypatch.chdir(user)
    return user


def test_the_seed_readme_commands_train_faceshq(faces_checkout, capsys, one_thread):
    if not torch.cuda.is_available():
        assert taming(["train", "--base", "configs/faceshq_vqgan.yaml", "-t", "True", "--gpus", "0,"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["taming train: error: --gpus 0,: GPU 0 is not there; this machine has no GPU that torch "
                       "can use. To train on the CPU, leave out --gpus."]
    gpus = ["--gpus", "0,"] if torch.cuda.is_available() else []
    stage = [f"model.params.{o}" for o in TINY_STAGE]
    assert taming(["train", "--base", "configs/faceshq_vqgan.yaml", "-t", "True", *gpus, "--max_steps", "2",
                   *stage, *TINY_DATA, *QUIET]) == 0
    vqgan = only_run(faces_checkout / "logs")
    assert (vqgan / "checkpoints" / "last.ckpt").is_file()
    first = [f"model.params.first_stage_config.params.{o}" for o in TINY_STAGE]
    gpt = ["model.params.transformer_config.params." + o for o in
           ("vocab_size=16", "block_size=128", "n_layer=1", "n_head=2", "n_embd=16")]
    assert taming(["train", "--base", "configs/faceshq_transformer.yaml", "-t", "True", *gpus, "--max_steps", "2",
                   f"model.params.first_stage_config.params.ckpt_path={vqgan}/checkpoints/last.ckpt", *first, *gpt,
                   "model.params.cond_stage_config.params.n_embed=16",
                   "model.params.cond_stage_config.params.down_factor=4", *TINY_DATA, *QUIET]) == 0
    out = capsys.readouterr()
    runs = sorted(p.name for p in (faces_checkout / "logs").iterdir())
    assert len(runs) == 2 and runs[1].endswith("_faceshq_transformer"), runs
    assert "data train: FacesHQTrain, 6" in out.out + out.err  # 3 CelebA-HQ + 3 FFHQ, via the shipped lists


def test_data_nodes_for_celebahq_ffhq_and_ade20k_replace_the_recipe_data():
    from taming.config import load_configs

    for recipe, data, target in (("faceshq_vqgan", "data_celebahq", "taming.data.faceshq.CelebAHQTrain"),
                                 ("faceshq_vqgan", "data_ffhq", "taming.data.faceshq.FFHQTrain"),
                                 ("sflckr_cond_stage", "data_ade20k", "taming.data.ade20k.ADE20kTrain")):
        config = load_configs([str(ROOT / "configs" / f"{recipe}.yaml"), str(ROOT / "configs" / f"{data}.yaml")])
        assert config.data.params.train.target == target
        assert "crop_size" not in config.data.params.train.params or data == "data_ade20k"  # FacesHQ's is gone
        assert config.data.params.batch_size == load_configs([str(ROOT / "configs" / f"{recipe}.yaml")]).data.params.batch_size
    assert config.model.params.n_labels == 151 and config.model.params.ddconfig.in_channels == 151
    assert config.model.params.ddconfig.ch == 128  # the recipe's other settings stay
