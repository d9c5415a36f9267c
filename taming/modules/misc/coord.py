"""Original import path `taming.modules.misc.coord`; CoordStage lives in taming/transformer/cond_stages.py."""
from taming.transformer.cond_stages import CoordStage

__all__ = ["CoordStage"]
