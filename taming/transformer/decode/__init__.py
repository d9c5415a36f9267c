"""The decoding engine: the GPT (taming/transformer/gpt.py, plain PyTorch) run for sampling under a
plan (taming.precision.DecodePlan) by the backend it names.

    engine.py     Decoder: one sampling call's weights, caches, forward over a cache, one-code step
    weights.py    the weights a call runs: the model's, or copies kept by their sources' versions
    attention.py  the one-code attention over a bf16 / int8 cache (native kernel), QuantizedCache
    native.py     cpu_decode.c loaded and layout-checked; the whole int8 step as one native call
    graph.py      a static cache and one CUDA graph per call (GPUs)
    generate.py   sample_logits, generate, sequence_nll: the cached sampling loop
"""
from taming.transformer.decode.engine import Decoder, Step
from taming.transformer.decode.generate import Generators, decoder, generate, sample_logits, sequence_nll

__all__ = ["Decoder", "Generators", "Step", "decoder", "generate", "sample_logits", "sequence_nll"]
