"""Original import path `taming.modules.losses`."""
from taming.losses.dummy import DummyLoss
from taming.losses.vqperceptual import VQLPIPSWithDiscriminator

__all__ = ["DummyLoss", "VQLPIPSWithDiscriminator"]
