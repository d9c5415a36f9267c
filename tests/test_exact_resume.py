"""Exact resume: N steps, stop, resume to 2N equals 2N straight, tensor by tensor (weights, optimizer
state), with random augmentation, dropout, shuffling and a mid-epoch stop; for the demo's VQGAN (dead-code
restarts, whose counters live outside the state_dict) and transformer configs, stopped by --max_steps
and by SIGTERM, with and without loader workers."""
from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from taming.checkpoint import read_checkpoint
from taming.cli.main import main
from taming.data.landscapes import LandscapesTrain
from helpers import ROOT, only_run, vqgan_config, write_config


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: two threads only hand work back and forth


@pytest.fixture(autouse=True)
def _no_allow_list_leaks(monkeypatch):
    """--allow-import writes $TAMING_ALLOW_IMPORTS: each test starts without it and leaves none behind."""
    monkeypatch.delenv("TAMING_ALLOW_IMPORTS", raising=False)


class JitteredLandscapes(LandscapesTrain):
    """Landscapes with augmentation drawn from all three global generators, as real datasets do."""

    def __getitem__(self, i):
        example = dict(super().__getitem__(i))
        image = example["image"]
        if random.random() < 0.5:
            image = image[:, ::-1]
        image = image + np.random.uniform(-0.1, 0.1, size=image.shape).astype(np.float32)
        example["image"] = np.ascontiguousarray(image + float(torch.rand(())) * 0.1)
        return example


def config(tmp_path, workers: int):
    ema = {"target": "lightning.pytorch.callbacks.EMAWeightAveraging", "params": {"decay": 0.9}}  # averaged weights too
    cfg = vqgan_config(train_len=6, callbacks={"image_logger": {"params": {"batch_frequency": 2, "max_images": 1}},
                                               "ema": ema})
    cfg["model"]["params"]["ddconfig"]["dropout"] = 0.3  # the model draws too
    cfg["data"]["params"]["num_workers"] = workers
    cfg["data"]["params"]["train"]["target"] = "test_exact_resume.JitteredLandscapes"
    return write_config(tmp_path / f"w{workers}.yaml", cfg)


def train(*args: str) -> int:
    return main(["train", "--accelerator", "cpu", "--no-test", "--allow-import", "test_exact_resume", *args])


def last(run) -> dict:
    return read_checkpoint(run / "checkpoints" / "last.ckpt")


def assert_same(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"]
    for weights in ("state_dict", "current_model_state"):  # the second: the raw weights beside an EMA's average
        assert a.get(weights, {}).keys() == b.get(weights, {}).keys()
        for key, value in a.get(weights, {}).items():
            torch.testing.assert_close(b[weights][key], value, rtol=0, atol=0, msg=key)
    assert len(a["optimizer_states"]) == len(b["optimizer_states"])
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"]):
        assert opt_a["state"].keys() == opt_b["state"].keys()
        for pid, state in opt_a["state"].items():
            for name, value in state.items():
                torch.testing.assert_close(opt_b["state"][pid][name], value, rtol=0, atol=0, msg=f"{pid}.{name}")


def test_stop_mid_epoch_and_resume_equals_a_straight_run(tmp_path):
    # 6 images in batches of 2: 3 batches an epoch; 4 steps stop inside the second epoch
    cfg = config(tmp_path, workers=0)
    assert train("-b", str(cfg), "-t", "-s", "7", "--max_steps", "8", "-l", str(tmp_path / "straight")) == 0
    assert train("-b", str(cfg), "-t", "-s", "7", "--max_steps", "4", "-l", str(tmp_path / "part")) == 0
    part = only_run(tmp_path / "part")
    assert last(part)["global_step"] == 4 and "current_model_state" in last(part)
    assert train("-r", str(part), "-t", "-s", "7", "--max_steps", "8") == 0
    assert_same(last(only_run(tmp_path / "straight")), last(part))


class TermAt(Callback):
    """Sends this process SIGTERM at the end of training batch `step` (before taming's handler looks)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def shrink_ddconfig(ddconfig: dict) -> None:
    ddconfig.update(resolution=16, ch=32, ch_mult=[1, 2], z_channels=8)


def demo_config(tmp_path: Path, name: str, workers: int, term_at: int | None = None) -> Path:
    """configs/landscapes_<name>.yaml at test size: 16 px images (8x8 codes), 16 codes, 10 training
    images in batches of 2 (5 batches an epoch), validation every 4 steps as the demo's every 200."""
    cfg = yaml.safe_load((ROOT / "configs" / f"landscapes_{name}.yaml").read_text())
    params = cfg["model"]["params"]
    if name == "vqgan":
        params.update(embed_dim=8, n_embed=16, restart_unused_codes=2)  # codes restart within the run
        shrink_ddconfig(params["ddconfig"])
        params["lossconfig"]["params"].update(disc_start=3, disc_ndf=8, disc_num_layers=1)  # the GAN joins too
    else:
        for stage, codes in (("first_stage_config", 16), ("cond_stage_config", 8)):
            params[stage]["params"].update(embed_dim=8, n_embed=codes)
            shrink_ddconfig(params[stage]["params"]["ddconfig"])
        params["transformer_config"]["params"].update(vocab_size=16, block_size=128, n_layer=1, n_head=2, n_embd=16)
    data = cfg["data"]["params"]
    data.update(batch_size=2, num_workers=workers)
    data["train"]["params"] = {"size": 16, "length": 10}
    data["validation"]["params"] = {"size": 16, "length": 2}
    cfg["lightning"]["trainer"].update(val_check_interval=4, enable_progress_bar=False, enable_model_summary=False)
    cfg["lightning"]["callbacks"]["image_logger"] = None
    if term_at is not None:
        cfg["lightning"]["callbacks"]["term"] = {"target": "test_exact_resume.TermAt", "params": {"step": term_at}}
    return write_config(tmp_path / f"{name}_w{workers}_{term_at}.yaml", cfg)


@pytest.mark.parametrize("name", ["vqgan", "transformer"])
def test_demo_configs_resume_exactly_after_max_steps_and_sigterm(tmp_path, name):
    """7 steps (ended by --max_steps, or by SIGTERM) then 14 equals 14 straight, the loader workers changing
    between the parts (0 then 2, 2 then 0; the straight run has none)."""
    assert train("-b", str(demo_config(tmp_path, name, 0)), "-t", "-s", "5", "--max_steps", "14",
                 "-l", str(tmp_path / "straight")) == 0
    straight = last(only_run(tmp_path / "straight"))
    assert straight["epoch"] == 2  # mid-epoch: 14 = 2 x 5 + 4
    # ended normally by the step limit inside epoch 1, resumed with a larger one
    assert train("-b", str(demo_config(tmp_path, name, 0)), "-t", "-s", "5", "--max_steps", "7",
                 "-l", str(tmp_path / "limit")) == 0
    part = only_run(tmp_path / "limit")
    assert last(part)["global_step"] == 7 and last(part)["epoch"] == 1
    assert train("-r", str(part), "-t", "-s", "5", "--max_steps", "14", "data.params.num_workers=2") == 0
    assert_same(straight, last(part))  # resumed with two loader workers
    # stopped by SIGTERM at step 7, with loader workers
    with pytest.raises(SystemExit) as stopped:
        train("-b", str(demo_config(tmp_path, name, 2, term_at=7)), "-t", "-s", "5", "--max_steps", "14",
              "-l", str(tmp_path / "term"))
    assert stopped.value.code == 143
    part = only_run(tmp_path / "term")
    saved = last(part)
    assert saved["global_step"] == 7
    assert [k for k in saved["callbacks"] if k.startswith("RandomState")]  # the random states travel along
    if name == "vqgan":  # and the codebook's restart clock, which is no state_dict key
        health = saved["taming_module_state"]["quantize.health"]
        assert health["steps_unused"].shape == (16,) and "quantize.health.steps_unused" not in saved["state_dict"]
    assert train("-r", str(part), "-t", "-s", "5", "--max_steps", "14", "data.params.num_workers=0") == 0
    assert_same(straight, last(part))  # resumed without


def test_a_changed_learning_rate_is_applied_to_the_restored_optimizers(tmp_path, capsys):
    """`train -r RUN model.base_learning_rate=X` trains with the rate it prints, and says the run now differs."""
    cfg = write_config(tmp_path / "c.yaml", vqgan_config(callbacks={"image_logger": None}))
    assert train("-b", str(cfg), "-t", "--max_steps", "2", "-l", str(tmp_path / "logs")) == 0
    run = only_run(tmp_path / "logs")
    assert {g["lr"] for opt in last(run)["optimizer_states"] for g in opt["param_groups"]} == {2e-4}  # batch 2 x 1e-4
    capsys.readouterr()
    assert train("-r", str(run), "-t", "--max_steps", "3", "model.base_learning_rate=0.5") == 0
    out = capsys.readouterr()
    assert "Setting learning rate to 1.00e+00" in out.out
    assert ("resume: learning rate 1.00e+00 applied to the restored optimizers (the checkpoint trained with "
            "2.00e-04); from here on this run differs from the config it recorded before") in out.err
    saved = last(run)
    assert {g["lr"] for opt in saved["optimizer_states"] for g in opt["param_groups"]} == {1.0}
    assert saved["taming_learning_rate"] == 1.0
    assert train("-r", str(run), "-t", "--max_steps", "4") == 0  # the newest recorded config holds the new rate
    assert "resume: learning rate" not in capsys.readouterr().err
    assert {g["lr"] for opt in last(run)["optimizer_states"] for g in opt["param_groups"]} == {1.0}
