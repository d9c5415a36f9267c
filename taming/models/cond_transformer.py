"""Original import path `taming.models.cond_transformer`: the Lightning shell (taming/training/transformer.py)
of the second-stage core (taming/transformer/net2net.py)."""
from taming.training.transformer import Net2NetTransformer
from taming.transformer.cond_stages import disabled_train

__all__ = ["Net2NetTransformer", "disabled_train"]
