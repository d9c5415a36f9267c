"""Original import path; `from taming.modules.losses.vqperceptual import *` gives what clients expect."""
from taming.losses.discriminator import NLayerDiscriminator, weights_init
from taming.losses.dummy import DummyLoss
from taming.losses.lpips import LPIPS
from taming.losses.vqperceptual import VQLPIPSWithDiscriminator, adopt_weight, hinge_d_loss, vanilla_d_loss

__all__ = ["DummyLoss", "LPIPS", "NLayerDiscriminator", "weights_init", "hinge_d_loss", "vanilla_d_loss",
           "adopt_weight", "VQLPIPSWithDiscriminator"]
