"""Original import path `taming.models.vqgan`: the first-stage models (Lightning shells)."""
from taming.training.first_stage import EMAVQ, GumbelVQ, VQModel, VQNoDiscModel, VQSegmentationModel

__all__ = ["VQModel", "GumbelVQ", "EMAVQ", "VQSegmentationModel", "VQNoDiscModel"]
