"""Original import path `taming.modules.vqvae.quantize`; the code lives in taming/tokenizer."""
from taming.tokenizer.ema import EMAVectorQuantizer, EmbeddingEMA
from taming.tokenizer.gumbel import GumbelQuantize
from taming.tokenizer.quantize import VectorQuantizer2
from taming.tokenizer.quantize_legacy import VectorQuantizer

__all__ = ["VectorQuantizer", "VectorQuantizer2", "GumbelQuantize", "EMAVectorQuantizer", "EmbeddingEMA"]
