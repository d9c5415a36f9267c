"""Original import path `taming.modules.transformer.permuter`; the code lives in taming/transformer/permuter.py."""
from taming.transformer.permuter import (AbstractPermuter, AlternateParsing, Identity, Random, SpiralIn,
                                         SpiralOut, Subsample, ZCurve)

__all__ = ["AbstractPermuter", "Identity", "Subsample", "ZCurve", "SpiralOut", "SpiralIn", "Random",
           "AlternateParsing"]
