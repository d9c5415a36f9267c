"""Run folders for the app's tests: tiny transformer runs (16 px images, 8x8 codes, a one-layer GPT
with random weights) written in the layout `taming train` makes."""
from __future__ import annotations

from pathlib import Path

from taming.checkpoint import save_state_dict
from taming.config import instantiate_from_config
from helpers import seg_transformer_config, write_config

NOW = "2026-01-01T00-00-00"


def make_run(root: Path, config: dict, name: str) -> Path:
    """A run folder as `taming train` leaves it: configs/<now>-project.yaml and checkpoints/last.ckpt."""
    run = root / "logs" / f"{NOW}_{name}"
    (run / "configs").mkdir(parents=True)
    project = {k: v for k, v in config.items() if k != "lightning"}
    write_config(run / "configs" / f"{NOW}-project.yaml", project)
    save_state_dict(run / "checkpoints" / "last.ckpt", instantiate_from_config(project["model"]))
    return run


def prefix_config(cond_stage: dict | str, cond_key: str, **params) -> dict:
    """The segmentation config's first stage with a one-code conditioning (a class label or SOS)."""
    config = seg_transformer_config(None, None)
    model = config["model"]["params"]
    model.update(cond_stage_config=cond_stage, cond_stage_key=cond_key, **params)
    model["transformer_config"]["params"]["block_size"] = 64  # 1 conditioning code + 64 image codes - 1
    del config["data"]
    return config
