"""Compatibility face: the original `taming.modules.vqvae.quantize` import path."""
from taming.tokenizer.ema import EMAVectorQuantizer, EmbeddingEMA
from taming.tokenizer.gumbel import GumbelQuantize
from taming.tokenizer.quantize import VectorQuantizer2
from taming.tokenizer.quantize_legacy import VectorQuantizer

__all__ = ["VectorQuantizer", "VectorQuantizer2", "GumbelQuantize", "EMAVectorQuantizer", "EmbeddingEMA"]
