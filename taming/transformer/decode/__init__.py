"""The decoding engine: the GPT (taming/transformer/gpt.py, plain PyTorch) run for sampling under a
plan (taming.precision.DecodePlan) by the backend it names; docs/ARCHITECTURE.md lists the files."""
from taming.transformer.decode.engine import Decoder, Step
from taming.transformer.decode.loop import Generators, decoder, generate, sample_logits, sequence_nll

__all__ = ["Decoder", "Generators", "Step", "decoder", "generate", "sample_logits", "sequence_nll"]
