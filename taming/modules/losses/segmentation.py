"""Original import path `taming.modules.losses.segmentation`."""
from taming.losses.segmentation import BCELossWithQuant

__all__ = ["BCELossWithQuant"]
