"""Original import path `taming.models.dummy_cond_stage`; DummyCondStage lives in taming/transformer/cond_stages.py."""
from taming.transformer.cond_stages import DummyCondStage

__all__ = ["DummyCondStage"]
