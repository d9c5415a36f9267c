"""Run folders for the app's tests: tiny transformer runs (16 px images, 8x8 codes, a one-layer GPT
with random weights) written in the layout `taming train` makes."""
from __future__ import annotations

from helpers import make_run, seg_transformer_config

__all__ = ["make_run", "prefix_config"]


def prefix_config(cond_stage: dict | str, cond_key: str, **params) -> dict:
    """The segmentation config's first stage with a one-code conditioning (a class label or SOS)."""
    config = seg_transformer_config(None, None)
    model = config["model"]["params"]
    model.update(cond_stage_config=cond_stage, cond_stage_key=cond_key, **params)
    model["transformer_config"]["params"]["block_size"] = 64  # 1 conditioning code + 64 image codes - 1
    del config["data"]
    return config
