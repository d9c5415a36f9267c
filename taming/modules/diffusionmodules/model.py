"""Original import path `taming.modules.diffusionmodules.model`; the code lives in taming/tokenizer."""
from taming.tokenizer.decoder import Decoder
from taming.tokenizer.encoder import Encoder
from taming.tokenizer.layers import AttnBlock, Downsample, Normalize, ResnetBlock, Upsample, nonlinearity, swish

__all__ = ["Encoder", "Decoder", "ResnetBlock", "AttnBlock", "Normalize", "nonlinearity", "swish",
           "Upsample", "Downsample"]
