"""Original import path `taming.models.cond_transformer`; the code lives in taming/training/transformer.py."""
from taming.training.transformer import Net2NetTransformer
from taming.transformer.cond_stages import disabled_train

__all__ = ["Net2NetTransformer", "disabled_train"]
