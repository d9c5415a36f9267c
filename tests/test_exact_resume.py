"""Exact resume: N steps, stop, resume to 2N equals 2N straight, tensor by tensor (weights, optimizer
state), with random augmentation, dropout, shuffling and a mid-epoch stop."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from taming.checkpoint import read_checkpoint
from taming.cli.main import main
from taming.data.landscapes import LandscapesTrain
from helpers import only_run, vqgan_config, write_config


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
    cfg = vqgan_config(train_len=6, callbacks={"image_logger": {"params": {"batch_frequency": 2, "max_images": 1}}})
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
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
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
    assert last(part)["global_step"] == 4
    assert train("-r", str(part), "-t", "-s", "7", "--max_steps", "8") == 0
    assert_same(last(only_run(tmp_path / "straight")), last(part))


def test_exact_with_loader_workers_and_the_random_state_is_in_the_checkpoint(tmp_path):
    cfg = config(tmp_path, workers=2)
    assert train("-b", str(cfg), "-t", "-s", "7", "--max_steps", "5", "-l", str(tmp_path / "straight")) == 0
    assert train("-b", str(cfg), "-t", "-s", "7", "--max_steps", "2", "-l", str(tmp_path / "part")) == 0
    part = only_run(tmp_path / "part")
    saved = [v for k, v in last(part)["callbacks"].items() if k.startswith("RandomState")]
    assert len(saved) == 1 and {"python", "numpy", "torch"} <= saved[0].keys()
    assert train("-r", str(part), "-t", "-s", "7", "--max_steps", "5") == 0
    assert_same(last(only_run(tmp_path / "straight")), last(part))
