"""The training engine end to end: `taming train` run folders, resume, DDP on CPU, tokenize.

Models are tiny (16x16 landscapes, a few steps) so the whole file runs in well under a minute.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch import nn

from helpers import QUIET, ROOT, seg_transformer_config, vqgan_config, write_config
from taming.checkpoint import read_checkpoint
from taming.cli.main import main


def train(*args: str) -> int:
    return main(["train", "--accelerator", "cpu", "--no-test", *args])


def only_run(logdir: Path) -> Path:
    runs = sorted(p for p in logdir.iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


# ---- run folder ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_creates_run_folder_layout(tmp_path):
    cfg = write_config(tmp_path / "tiny_vqgan.yaml", vqgan_config(
        callbacks={"image_logger": {"params": {"batch_frequency": 2, "max_images": 2}}}))
    assert train("-b", str(cfg), "-t", "-n", "layout", "--max_steps", "3", "-l", str(tmp_path / "logs")) == 0
    run = only_run(tmp_path / "logs")
    assert run.name.endswith("_layout") and len(run.name) == len("2026-01-01T00-00-00_layout")
    now = run.name.split("_")[0]
    assert (run / "configs" / f"{now}-project.yaml").is_file()
    assert (run / "configs" / f"{now}-lightning.yaml").is_file()
    project = yaml.safe_load((run / "configs" / f"{now}-project.yaml").read_text())
    assert project["model"]["params"]["n_embed"] == 16 and "lightning" not in project

    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3  # batches, as the original (not 6 optimizer steps)
    assert len(ckpt["optimizer_states"]) == 2

    # image logger: steps 0, 1, 2 (powers of two below the frequency, and multiples of it)
    pngs = sorted(p.name for p in (run / "images" / "train").glob("*.png"))
    assert [p for p in pngs if p.startswith("inputs")] == [
        "inputs_gs-000000_e-000000_b-000000.png", "inputs_gs-000001_e-000000_b-000001.png",
        "inputs_gs-000002_e-000001_b-000000.png"]
    grid = Image.open(run / "images" / "train" / pngs[0])
    assert grid.size == (2 * 18 + 2, 18 + 2)  # 2 images of 16 px, 2 px borders
    assert "train/aeloss_step" in (run / "csv" / now / "metrics.csv").read_text().splitlines()[0]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


# ---- resume ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_resume_continues_like_an_uninterrupted_run(tmp_path):
    # 4 images, batch 2: an epoch is 2 batches, so the interruption falls on an epoch boundary
    # (Lightning restarts an interrupted epoch from its first batch).
    cfg = write_config(tmp_path / "tiny.yaml", vqgan_config(callbacks={"image_logger": None}))
    assert train("-b", str(cfg), "-t", "--max_steps", "4", "-l", str(tmp_path / "full")) == 0
    assert train("-b", str(cfg), "-t", "--max_steps", "2", "-l", str(tmp_path / "part")) == 0
    part = only_run(tmp_path / "part")
    assert read_checkpoint(part / "checkpoints" / "last.ckpt")["global_step"] == 2
    assert train("-r", str(part), "-t", "--max_steps", "4") == 0

    full = read_checkpoint(only_run(tmp_path / "full") / "checkpoints" / "last.ckpt")
    resumed = read_checkpoint(part / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == full["global_step"] == 4
    assert resumed["state_dict"].keys() == full["state_dict"].keys()
    for key, value in full["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    for opt_full, opt_res in zip(full["optimizer_states"], resumed["optimizer_states"]):
        for pid, state in opt_full["state"].items():
            torch.testing.assert_close(opt_res["state"][pid]["exp_avg"], state["exp_avg"], rtol=0, atol=1e-6)
            assert float(opt_res["state"][pid]["step"]) == float(state["step"])
    # the resumed run reuses its folder and configs; nothing new was created beside it
    assert [p.name for p in (tmp_path / "part").iterdir()] == [part.name]


# ---- DDP ---------------------------------------------------------------------------------------------
class TinyGAN(L.LightningModule):
    """Stand-in for the VQGAN's training structure (manual optimization, two optimizers, a critic that
    sees detached reconstructions) without BatchNorm or the adaptive weight, whose per-process
    batch statistics make real DDP differ from one process by design. SGD keeps float rounding from
    being amplified as Adam's normalisation does for near-zero gradients."""

    def __init__(self, ch: int = 4, manual: bool = True):
        super().__init__()
        self.image_key = "image"
        self.enc = nn.Conv2d(3, ch, 3, padding=1)
        self.dec = nn.Conv2d(ch, 3, 3, padding=1)
        self.critic = nn.Conv2d(3, 1, 3, padding=1)
        self.automatic_optimization = not manual
        self.learning_rate = None

    def get_input(self, batch, key="image"):
        return batch[key].permute(0, 3, 1, 2).float()

    def forward(self, x):
        return self.dec(torch.tanh(self.enc(x)))

    def training_step(self, batch, batch_idx):
        x = self.get_input(batch)
        xrec = self(x)
        loss = F.mse_loss(xrec, x)
        opt_g, opt_d = self.optimizers()
        opt_g.zero_grad()
        self.manual_backward(loss)
        opt_g.step()
        critic = self.critic(xrec.detach()).pow(2).mean()
        opt_d.zero_grad()
        self.manual_backward(critic)
        self.trainer.strategy.optimizer_step(opt_d.optimizer, closure=lambda: None, model=self)
        self.log("train/loss", loss)

    def configure_optimizers(self):
        gen = list(self.enc.parameters()) + list(self.dec.parameters())
        return [torch.optim.SGD(gen, lr=self.learning_rate, momentum=0.9),
                torch.optim.SGD(self.critic.parameters(), lr=self.learning_rate)]


def tiny_gan_config(batch: int) -> dict:
    return {"model": {"base_learning_rate": 0.02, "target": "test_training_engine.TinyGAN"},
            "data": {"target": "main.DataModuleFromConfig", "params": {
                "batch_size": batch, "num_workers": 0,
                "train": {"target": "taming.data.landscapes.LandscapesTrain", "params": {"size": 8, "length": 12}}}},
            "lightning": {"trainer": QUIET, "callbacks": {"image_logger": None}}}


@pytest.mark.slow
def test_weight_averaging_callback_from_config_saves_average_and_raw_weights(tmp_path):
    """configs/sflckr_vqgan_quality_ema.yaml's callback on the GAN (manual optimization): the
    checkpoint's state_dict holds the average, current_model_state the raw weights, and a resumed
    run continues from them."""
    cfg = vqgan_config(train_len=8, callbacks={"image_logger": None})
    ema = yaml.safe_load((ROOT / "configs" / "sflckr_vqgan_quality_ema.yaml").read_text())["lightning"]["callbacks"]
    cfg["lightning"]["callbacks"].update(ema)
    config = write_config(tmp_path / "ema.yaml", cfg)
    assert train("-b", str(config), "-t", "--max_steps", "3", "-l", str(tmp_path / "logs")) == 0
    run = only_run(tmp_path / "logs")
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3
    avg, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert avg.keys() == raw.keys()
    L.seed_everything(23, verbose=False)  # the run's initial weights
    from taming.config import instantiate_from_config

    init = instantiate_from_config(cfg["model"]).state_dict()
    key = "decoder.conv_out.weight"
    # the first update copies step 1's weights, decay 0.995 then barely moves them: the average
    # trails the raw weights, which took 3 steps
    assert 0 < (avg[key] - init[key]).abs().max() < 0.5 * (raw[key] - init[key]).abs().max()
    assert train("-r", str(run), "-t", "--max_steps", "5") == 0
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 5


def _train_subprocess(config: Path, logdir: Path, *flags: str, steps: int = 3) -> tuple[Path, str]:
    """`taming train` in a fresh process (a distributed run launches its workers from the command line)
    -> (last.ckpt, stdout + stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "taming.cli.main", "train", "-t", "--no-test", "--accelerator", "cpu",
           "--max_steps", str(steps), "-b", str(config), "-l", str(logdir), *flags]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return only_run(logdir) / "checkpoints" / "last.ckpt", r.stdout + r.stderr


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one_process(tmp_path):
    one = write_config(tmp_path / "one.yaml", tiny_gan_config(batch=4))
    two = write_config(tmp_path / "two.yaml", tiny_gan_config(batch=2))
    # the model class lives in this test module: allowed explicitly, as any package outside taming
    ckpt_one, _ = _train_subprocess(one, tmp_path / "one", "--allow-import", "test_training_engine", steps=5)
    ckpt_two, out = _train_subprocess(two, tmp_path / "two", "--strategy", "ddp", "--devices", "2",
                                      "--allow-import", "test_training_engine", steps=5)
    # the same learning rate: 1 x 1 device x batch 4 == 1 x 2 devices x batch 2
    assert "Setting learning rate to 8.00e-02 = 1 (accumulate_grad_batches) * 2 (num_gpus) * 2 (batchsize)" \
        in out
    assert "MEMBER: 2/2" in out
    a, b = read_checkpoint(ckpt_one), read_checkpoint(ckpt_two)
    assert a["global_step"] == b["global_step"] == 5
    init = TinyGAN()  # the weights moved: the comparison is not between two untrained models
    moved = max((a["state_dict"]["dec.weight"] - init.dec.weight).abs().max().item(), 0)
    assert moved > 1e-3
    for key in a["state_dict"]:
        torch.testing.assert_close(b["state_dict"][key], a["state_dict"][key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.slow
def test_fsdp_two_cpu_processes_shard_the_transformer_and_match_one_process(tmp_path):
    """--strategy fsdp (FSDP2 over gloo): the GPT trained sharded on 2 processes x batch 2 equals one
    process x batch 4, and the checkpoint is a whole, ordinary one."""
    stages = seg_transformer_config(None, None)["model"]["params"]
    vq = save_stage(tmp_path / "vq.ckpt", stages["first_stage_config"])
    seg = save_stage(tmp_path / "seg.ckpt", stages["cond_stage_config"])
    configs = {}
    for batch in (4, 2):
        cfg = seg_transformer_config(vq, seg)
        cfg["data"]["params"]["batch_size"] = batch
        cfg["data"]["params"]["train"]["params"]["length"] = 8
        configs[batch] = write_config(tmp_path / f"tr{batch}.yaml", cfg)
    a = read_checkpoint(_train_subprocess(configs[4], tmp_path / "one")[0])
    b_ckpt, out = _train_subprocess(configs[2], tmp_path / "fsdp", "--strategy", "fsdp", "--devices", "2")
    b = read_checkpoint(b_ckpt)
    assert a["global_step"] == b["global_step"] == 3
    assert "MEMBER: 2/2" in out and "sync_dist" not in out  # train/loss of an epoch: both processes' batches
    assert a["state_dict"].keys() == b["state_dict"].keys()
    init = read_checkpoint(vq)  # the stages are frozen: their weights come back unchanged
    for key, value in init["state_dict"].items():
        torch.testing.assert_close(b["state_dict"]["first_stage_model." + key], value, rtol=0, atol=0)
    for key, value in a["state_dict"].items():
        assert type(b["state_dict"][key]) is torch.Tensor, key  # gathered, not DTensor shards
        torch.testing.assert_close(b["state_dict"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    # AdamW moments too. Keys differ by convention: ours index the optimizer's own parameter list,
    # Lightning's FSDP checkpoints index model.parameters(); compare them by parameter name.
    from taming.config import instantiate_from_config

    model = instantiate_from_config(yaml.safe_load(configs[4].read_text())["model"])
    names = {id(p): n for n, p in model.named_parameters()}
    in_optimizer = [names[id(p)] for g in model.transformer.param_groups(0.01) for p in g["params"]]
    in_model = [n for n, _ in model.named_parameters()]
    opt_a = {in_optimizer[k]: v for k, v in a["optimizer_states"][0]["state"].items()}
    opt_b = {in_model[k]: v for k, v in b["optimizer_states"][0]["state"].items()}
    assert opt_a.keys() == opt_b.keys() and len(opt_a) == len(in_optimizer)
    for name in opt_a:
        torch.testing.assert_close(opt_b[name]["exp_avg"], opt_a[name]["exp_avg"], rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.slow
def test_fsdp_trains_the_vqgan_like_ddp(tmp_path):
    """The GAN under FSDP2 (manual optimization, two optimizers, the adaptive weight's gradient of
    the sharded decoder's last layer) gives DDP's weights: both compute that weight per process."""
    cfg = vqgan_config(batch=2, train_len=8, callbacks={"image_logger": None})
    config = write_config(tmp_path / "vq.yaml", cfg)
    ddp_ckpt, out = _train_subprocess(config, tmp_path / "ddp", "--strategy", "ddp", "--devices", "2")
    ddp = read_checkpoint(ddp_ckpt)
    fsdp = read_checkpoint(_train_subprocess(config, tmp_path / "fsdp", "--strategy", "fsdp", "--devices", "2")[0])
    assert ddp["global_step"] == fsdp["global_step"] == 3
    # 3 steps of 2 batches per epoch and process cross an epoch end: its epoch-level metrics were reduced
    # over both processes, so Lightning has no "use self.log(..., sync_dist=True)" to say (13 lines before)
    assert "MEMBER: 2/2" in out and "sync_dist" not in out
    assert ddp["state_dict"].keys() == fsdp["state_dict"].keys()
    from taming.config import instantiate_from_config

    L.seed_everything(23, verbose=False)  # the trainer's default seed: the runs' initial weights
    init = instantiate_from_config(cfg["model"]).state_dict()
    for key in ("decoder.conv_out.weight", "encoder.conv_in.weight", "loss.discriminator.main.0.weight"):
        assert (ddp["state_dict"][key] - init[key]).abs().max() > 1e-4, key  # both runs trained
    for key, value in ddp["state_dict"].items():
        torch.testing.assert_close(fsdp["state_dict"][key], value, rtol=1e-4, atol=1e-6, msg=key)


# ---- tokenize ----------------------------------------------------------------------------------------
def save_stage(path: Path, node: dict) -> str:
    """Build a stage from its config node (random weights) and save them, as a trained stage would be."""
    from taming.checkpoint import save_state_dict
    from taming.config import instantiate_from_config

    save_state_dict(path, instantiate_from_config(node))
    return str(path)


@pytest.mark.slow
def test_tokenize_writes_shards_and_transformer_trains_on_them(tmp_path):
    from taming.checkpoint import load_model
    from taming.data.code_shards import CodeEncoder
    from taming.data.codes import CodeShards
    from taming.data.landscapes import LandscapesTrain

    stages = seg_transformer_config(None, None)["model"]["params"]
    vq = save_stage(tmp_path / "vq.ckpt", stages["first_stage_config"])
    seg = save_stage(tmp_path / "seg.ckpt", stages["cond_stage_config"])
    cfg = write_config(tmp_path / "tr.yaml", seg_transformer_config(vq, seg))
    out = tmp_path / "codes"
    # --precision fp32: the exact codes, compared below (the default, auto, may pick bf16 convolutions)
    assert main(["tokenize", "--config", str(cfg), "--out", str(out), "--shard-size", "3", "--flip",
                 "--precision", "fp32"]) == 0
    train_shards = sorted(out.glob("train-*.tar"))
    assert len(train_shards) == 3  # 4 images x 2 variants = 8 samples, 3 per shard
    samples = list(CodeShards([str(p) for p in train_shards], shuffle=0))
    assert sorted(s["__key__"] for s in samples) == sorted(f"{i:09d}_{v}" for i in range(4) for v in ("orig", "flip"))
    assert samples[0]["z_indices"].shape == (8, 8) and samples[0]["c_indices"].shape == (8, 8)

    # the stored codes are what the model's stages give for the same images
    model, _ = load_model(str(cfg), None, [])
    tok = CodeEncoder(model)
    ds = LandscapesTrain(size=16, length=4)
    batch = {k: torch.as_tensor(np.stack([ds[i][k] for i in range(4)])) for k in ("image", "segmentation")}
    x, c = tok.inputs(batch)
    z, cc = tok.encode(x.flip(-1), c.flip(-1))
    by_key = {s["__key__"]: s for s in samples}
    for i in range(4):
        np.testing.assert_array_equal(by_key[f"{i:09d}_flip"]["z_indices"], z[i].numpy())
        np.testing.assert_array_equal(by_key[f"{i:09d}_flip"]["c_indices"], cc[i].numpy())

    # the transformer trains from the shards alone (data.yaml written by tokenize)
    assert train("-b", str(cfg), str(out / "data.yaml"), "-t", "--max_steps", "3", "-l", str(tmp_path / "logs")) == 0
    ckpt = read_checkpoint(only_run(tmp_path / "logs") / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3
    sd = ckpt["state_dict"]
    for key, value in model.state_dict().items():
        if key.startswith(("first_stage_model.", "cond_stage_model.")):
            torch.testing.assert_close(sd[key], value, rtol=0, atol=0, msg=key)  # frozen stages
    assert not torch.equal(sd["transformer.head.weight"], model.state_dict()["transformer.head.weight"])


# ---- data module -------------------------------------------------------------------------------------
def test_data_module_batches_split_across_ranks_like_one_large_batch():
    from taming.training.datamodule import DataModuleFromConfig, default_num_workers

    node = {"target": "taming.data.landscapes.LandscapesTrain", "params": {"size": 8, "length": 12}}
    assert default_num_workers(4) == min(8, os.cpu_count())
    dm = DataModuleFromConfig(batch_size=4, train=node, num_workers=0, seed=5)
    assert dm.val_dataloader is None and dm.test_dataloader is None  # only configured splits exist

    def keys(loader):
        return [sorted(b["file_path_"]) for b in loader]

    one = keys(dm.train_dataloader())
    ranks = []
    for rank in range(2):
        half = DataModuleFromConfig(batch_size=2, train=node, num_workers=0, seed=5)
        half.trainer = type("T", (), {"world_size": 2, "global_rank": rank, "current_epoch": 0})()
        ranks.append(keys(half.train_dataloader()))
    assert [sorted(a + b) for a, b in zip(*ranks)] == one
    assert sorted(k for batch in one for k in batch) == sorted(f"landscape://train/0/{i}" for i in range(12))
    # a new epoch is a new permutation, taken from the trainer's epoch
    dm.trainer = type("T", (), {"world_size": 1, "global_rank": 0, "current_epoch": 1})()
    assert keys(dm.train_dataloader()) != one


def test_data_module_drop_last_keeps_every_training_batch_full():
    from taming.training.datamodule import DataModuleFromConfig

    node = {"target": "taming.data.landscapes.LandscapesTrain", "params": {"size": 8, "length": 10}}

    def sizes(**kw):
        dm = DataModuleFromConfig(batch_size=4, train=node, validation=node, num_workers=0, seed=5, **kw)
        return [len(b["file_path_"]) for b in dm.train_dataloader()], [len(b["file_path_"]) for b in dm.val_dataloader()]

    # 10 images in batches of 4: the original's loader ends each epoch on a batch of 2
    assert sizes() == ([4, 4, 2], [4, 4, 2])
    # drop_last: every training step sees a full batch (the S-FLCKR quality recipe); validation keeps all
    assert sizes(drop_last=True) == ([4, 4], [4, 4, 2])
