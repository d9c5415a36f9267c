"""First stage (the image tokenizer), plain nn.Modules: see docs/ARCHITECTURE.md."""
from .decoder import Decoder
from .encoder import Encoder
from .ema import EMAVectorQuantizer
from .gumbel import GumbelQuantize
from .quantize import CodeInfo, QuantizerOutput, VectorQuantizer2
from .quantize_legacy import VectorQuantizer
from .vqgan import EMAVQGAN, VQGAN, GumbelVQGAN

__all__ = ["Encoder", "Decoder", "VectorQuantizer", "VectorQuantizer2", "GumbelQuantize", "EMAVectorQuantizer",
           "VQGAN", "GumbelVQGAN", "EMAVQGAN", "QuantizerOutput", "CodeInfo"]
