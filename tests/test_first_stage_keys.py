"""Every original first-stage config builds a model with exactly the released state_dict keys and shapes.

Models are built on the meta device (no memory, no init cost) and without any LPIPS weight file:
construction must never read or download weights.
"""
from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from taming.config import instantiate_from_config
from helpers import COMPAT

FIRST_STAGE = ["faceshq_vqgan", "imagenet_vqgan", "custom_vqgan", "imagenetdepth_vqgan",
               "coco_cond_stage", "sflckr_cond_stage"]


@pytest.fixture(autouse=True)
def no_weight_files(tmp_path, monkeypatch):
    """Every place LPIPS could find its files is empty: a file read would raise."""
    monkeypatch.delenv("TAMING_VGG16", raising=False)
    monkeypatch.delenv("TAMING_LPIPS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda *a, **k: pytest.fail("construction tried to download weights"))


@pytest.mark.parametrize("name", FIRST_STAGE)
def test_config_builds_original_keys(name):
    cfg = OmegaConf.load(COMPAT / "configs" / f"{name}.yaml")
    ref = json.loads((COMPAT / "keys" / f"{name}.json").read_text())
    assert cfg.model.target == ref["target"]
    cfg.model.params.pop("ckpt_path", None)
    with torch.device("meta"):
        model = instantiate_from_config(cfg.model, where=f"{name}.model")
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    want = ref["keys"]
    assert sorted(set(want) - set(got)) == [], "missing keys"
    assert sorted(set(got) - set(want)) == [], "unexpected keys"
    assert {k: got[k] for k in want} == want
    # Loss weights are unread placeholders until a checkpoint or the files fill them.
    loss = getattr(model, "loss", None)
    if hasattr(loss, "perceptual_loss"):
        assert not loss.perceptual_loss.weights_loaded
