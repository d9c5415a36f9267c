"""Compatibility face: the original `taming.modules.diffusionmodules.model` import path.

The code lives in taming/tokenizer; downstream projects import these names from here.
"""
from taming.tokenizer.decoder import Decoder
from taming.tokenizer.encoder import Encoder
from taming.tokenizer.layers import AttnBlock, Downsample, Normalize, ResnetBlock, Upsample, nonlinearity, swish

__all__ = ["Encoder", "Decoder", "ResnetBlock", "AttnBlock", "Normalize", "nonlinearity", "swish",
           "Upsample", "Downsample"]
