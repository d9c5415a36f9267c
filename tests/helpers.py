"""Helpers shared by several test modules (the fixtures themselves live in conftest.py): where the
reference data is, tiny configs for training runs, the compat GPT fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml
from omegaconf import OmegaConf

from taming.checkpoint import load_weights, read_state_dict
from taming.transformer.gpt import GPT

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TAMING_SHARED") or ROOT.parent / "shared")  # elsewhere: the GPU check's copy
COMPAT = SHARED / "compat"
FIXTURES = COMPAT / "fixtures"

QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
         "log_every_n_steps": 1}


def vqgan_config(size: int = 16, train_len: int = 4, batch: int = 2, **lightning) -> dict:
    """A VQModel of ~0.2M parameters on `size` px landscapes (f=2, 16 codes), GAN from step 1."""
    return {
        "model": {"base_learning_rate": 1.0e-4, "target": "taming.models.vqgan.VQModel", "params": {
            "embed_dim": 8, "n_embed": 16,
            "ddconfig": {"double_z": False, "z_channels": 8, "resolution": size, "in_channels": 3, "out_ch": 3,
                         "ch": 32, "ch_mult": [1, 1], "num_res_blocks": 1, "attn_resolutions": [],
                         "dropout": 0.0},
            "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator", "params": {
                "disc_start": 1, "disc_in_channels": 3, "disc_num_layers": 1, "disc_ndf": 8,
                "perceptual_weight": 0.0, "disc_weight": 0.8}}}},
        "data": {"target": "main.DataModuleFromConfig", "params": {
            "batch_size": batch, "num_workers": 0,
            "train": {"target": "taming.data.landscapes.LandscapesTrain", "params": {"size": size, "length": train_len}},
            "validation": {"target": "taming.data.landscapes.LandscapesValidation",
                           "params": {"size": size, "length": 2}}}},
        "lightning": {"trainer": {**QUIET, **lightning.pop("trainer", {})}, **lightning},
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


NOW = "2026-01-01T00-00-00"


def make_run(root: Path, config: dict, name: str) -> Path:
    """A run folder as `taming train` leaves it: configs/<now>-project.yaml and checkpoints/last.ckpt
    (the config's model built with random weights)."""
    from taming.checkpoint import save_state_dict
    from taming.config import instantiate_from_config

    run = root / "logs" / f"{NOW}_{name}"
    (run / "configs").mkdir(parents=True)
    project = {k: v for k, v in config.items() if k != "lightning"}
    write_config(run / "configs" / f"{NOW}-project.yaml", project)
    save_state_dict(run / "checkpoints" / "last.ckpt", instantiate_from_config(project["model"]))
    return run


def seg_transformer_config(vq_ckpt: str | None, seg_ckpt: str | None, size: int = 16) -> dict:
    """A Net2NetTransformer conditioned on landscape segmentations (8 labels), tiny stages."""
    vq = vqgan_config(size)["model"]["params"]
    first = {"target": "taming.models.vqgan.VQModel",
             "params": {**vq, "lossconfig": {"target": "taming.modules.losses.DummyLoss"},
                        **({"ckpt_path": vq_ckpt} if vq_ckpt else {})}}
    seg = {"target": "taming.models.vqgan.VQSegmentationModel", "params": {
        "n_labels": 8, "embed_dim": 8, "n_embed": 8, "image_key": "segmentation",
        "ddconfig": {**vq["ddconfig"], "in_channels": 8, "out_ch": 8},
        "lossconfig": {"target": "taming.modules.losses.DummyLoss"},
        **({"ckpt_path": seg_ckpt} if seg_ckpt else {})}}
    hw = (size // 2) ** 2
    return {
        "model": {"base_learning_rate": 1.0e-4, "target": "taming.models.cond_transformer.Net2NetTransformer",
                  "params": {"first_stage_key": "image", "cond_stage_key": "segmentation",
                             "first_stage_config": first, "cond_stage_config": seg,
                             "transformer_config": {"target": "taming.modules.transformer.mingpt.GPT", "params": {
                                 "vocab_size": 16, "block_size": 2 * hw, "n_layer": 1, "n_head": 2, "n_embd": 16}}}},
        "data": {"target": "main.DataModuleFromConfig", "params": {
            "batch_size": 2, "num_workers": 0,
            "train": {"target": "taming.data.landscapes.LandscapesTrain", "params": {"size": size, "length": 4}},
            "validation": {"target": "taming.data.landscapes.LandscapesValidation", "params": {"size": size, "length": 2}}}},
        "lightning": {"trainer": QUIET, "callbacks": {"image_logger": None}},
    }


def fixture_gpt(name: str) -> GPT:
    """The GPT of a fixture, loaded strictly from the transformer.* part of its checkpoint."""
    cfg = OmegaConf.load(FIXTURES / name / "config.yaml").model.params.transformer_config.params
    gpt = GPT(**OmegaConf.to_container(cfg)).eval()
    sd = read_state_dict(FIXTURES / name / "model.ckpt")
    sd = {k[len("transformer."):]: v for k, v in sd.items() if k.startswith("transformer.")}
    load_weights(gpt, sd, source=f"{name}/model.ckpt")
    return gpt


def expected(name: str) -> dict:
    return torch.load(FIXTURES / name / "expected.pt", weights_only=True)


def only_run(logdir: Path) -> Path:
    """The one run folder under `logdir`."""
    runs = sorted(p for p in logdir.iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


def prefix_config(cond_stage: dict | str, cond_key: str, **params) -> dict:
    """The segmentation config's first stage with a one-code conditioning (a class label or SOS)."""
    config = seg_transformer_config(None, None)
    model = config["model"]["params"]
    model.update(cond_stage_config=cond_stage, cond_stage_key=cond_key, **params)
    model["transformer_config"]["params"]["block_size"] = 64  # 1 conditioning code + 64 image codes - 1
    del config["data"]
    return config


class ModelCheckpoint:  # stands for the Lightning 1.x callback class pickled as a dict key in released .ckpt files
    pass


def original_run(root: Path, fixture: Path, name: str) -> Path:
    """A run folder as the original released them: configs/<ts>-project.yaml (+ -lightning.yaml) and a
    Lightning 1.x checkpoints/last.ckpt (pickled callback keys, hparams namespace), the original's key names."""
    import argparse

    ts = "2020-11-09T13-33-36"
    run = root / f"{ts}_{name}"
    (run / "configs").mkdir(parents=True)
    config = yaml.safe_load((fixture / "config.yaml").read_text())
    config["data"] = {"target": "main.DataModuleFromConfig", "params": {"batch_size": 4, "train": {
        "target": "taming.data.custom.CustomTrain",
        "params": {"size": 64, "training_images_list_file": "/home/authors/data/train.txt"}}}}
    write_config(run / "configs" / f"{ts}-project.yaml", config)
    write_config(run / "configs" / f"{ts}-lightning.yaml", {"lightning": {"trainer": {"gpus": "0,"}}})
    state_dict = torch.load(fixture / "model.ckpt", weights_only=True)["state_dict"]
    (run / "checkpoints").mkdir()
    torch.save({"epoch": 7, "global_step": 1200, "pytorch-lightning_version": "1.0.8", "state_dict": state_dict,
                "callbacks": {ModelCheckpoint: {"best_model_score": None}}, "optimizer_states": [],
                "lr_schedulers": [], "hparams_name": "kwargs",
                "hyper_parameters": {"args": argparse.Namespace(base=[f"configs/{name}.yaml"])}},
               run / "checkpoints" / "last.ckpt")
    return run
