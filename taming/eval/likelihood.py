"""Validation likelihood of a transformer: NLL per code and bits per dimension.

The NLL is the model's own objective in eval mode (teacher forcing, no code corruption, no guidance
dropout): the cross-entropy of every image code given the conditioning and the codes before it,
averaged over all codes of the split. Per image of H x W x 3 values coded by n codes,
    bits/dim = NLL_per_code * n / (H * W * 3) / ln 2,
and the uniform baseline (every code equally likely) is log2(vocab) * n / (H * W * 3).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F


@torch.no_grad()
def evaluate_likelihood(model: torch.nn.Module, batches: Iterable[Mapping[str, Any]],
                        autocast_bf16: bool = False) -> dict[str, float]:
    """`model` is a Net2NetTransformer; batches as its data config makes them (images or code shards)."""
    nll_sum, codes, images, dims = 0.0, 0, 0, None
    device = next(model.transformer.parameters()).device
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if autocast_bf16 else contextlib.nullcontext()
    for batch in batches:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        z, c = model.get_codes(batch)  # (B, Nz), (B, Nc)
        with amp:
            logits, target = model.forward_codes(z, c)  # (B, Nz, V), (B, Nz)
        nll_sum += float(F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                                         reduction="sum"))
        codes += target.numel()
        images += target.shape[0]
        dims = dims or _pixel_values(model, batch, target.shape[1])
    nll = nll_sum / codes
    per_image = codes / images
    vocab = int(model.vocab_size)
    return {"images": images, "codes_per_image": per_image, "vocab_size": vocab, "nll_per_code": nll,
            "bits_per_code": nll / math.log(2), "bits_per_dim": nll * per_image / dims / math.log(2),
            "uniform_bits_per_dim": math.log2(vocab) * per_image / dims, "pixel_values_per_image": dims}


def _pixel_values(model: torch.nn.Module, batch: Mapping[str, Any], n_codes: int) -> int:
    """H * W * 3 of the images the codes stand for: from the batch's images, else from the code grid."""
    key = getattr(model, "first_stage_key", "image")
    if key in batch and torch.is_tensor(batch[key]) and batch[key].dim() == 4:
        h, w, ch = batch[key].shape[1:]  # channels-last (B, H, W, C)
        return int(h * w * ch)
    factor = model.first_stage_model.downsample_factor  # pre-tokenized shards: n codes of factor^2 pixels each
    return int(n_codes * factor * factor * 3)
