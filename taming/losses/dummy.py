"""Placeholder loss for first stages built only to encode/decode (the transformer configs use it)."""
from torch import nn


class DummyLoss(nn.Module):
    """Holds no weights, so a model built with it has no `loss.*` keys."""

    def forward(self, *args, **kwargs):
        raise RuntimeError("DummyLoss is a placeholder for inference-only first stages; give the model a "
                           "real lossconfig (e.g. taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator) "
                           "to train it")
