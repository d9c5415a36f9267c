"""Original import path `taming.modules.util`: SOSProvider and Labelator live in
taming/transformer/cond_stages.py, ActNorm in taming/losses/discriminator.py, count_params in taming/optim.py."""
from taming.losses.discriminator import ActNorm
from taming.optim import count_params
from taming.transformer.cond_stages import Labelator, SOSProvider

__all__ = ["SOSProvider", "ActNorm", "Labelator", "count_params"]
