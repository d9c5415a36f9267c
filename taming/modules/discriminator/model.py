"""Original import path `taming.modules.discriminator.model` (ActNorm lived in taming.modules.util)."""
from taming.losses.discriminator import ActNorm, NLayerDiscriminator, weights_init

__all__ = ["ActNorm", "NLayerDiscriminator", "weights_init"]
