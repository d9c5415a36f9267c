"""Original import path `taming.modules.transformer.mingpt`: the model lives in taming/transformer/gpt.py,
the original module-level samplers in taming/transformer/mingpt_samplers.py."""
from taming.transformer.gpt import GPT, Block, CausalSelfAttention, KVCache
from taming.transformer.mingpt_samplers import sample, sample_with_past, top_k_logits

__all__ = ["GPT", "Block", "CausalSelfAttention", "KVCache", "top_k_logits", "sample", "sample_with_past"]
