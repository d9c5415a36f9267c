"""Images a Net2NetTransformer logs during training, under the original's keys.

inputs, reconstructions (codes decoded), conditioning and conditioning_rec (when the cond stage can
decode), samples_half (first half of the codes given), samples_nopix (from nothing, top-k sampling),
samples_det (argmax). A pre-tokenized batch (codes, no pixels) logs the decoded codes as inputs.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch

from taming.images import labels_to_rgb
from taming.scene import layout_pictures
from taming.transformer.net2net import Net2Net


def _code_grid_shape(model: Net2Net, batch: Mapping[str, Any], n: int) -> tuple[int, int, int, int]:
    """zshape (B, D, h, w) of pre-tokenized codes stored as (B, h, w), or (B, h*w) for a square grid."""
    codes = batch[model.z_codes_key]
    if codes.ndim == 3:
        h, w = codes.shape[1:]
    else:
        h = w = math.isqrt(codes.shape[1])
        if h * w != codes.shape[1]:
            raise ValueError(f"{model.z_codes_key}: {codes.shape[1]} codes per image are not a square grid; "
                             "store them as (B, h, w)")
    return min(n, codes.shape[0]), model.first_stage_model.embed_dim, h, w


@torch.no_grad()
def log_transformer_images(model: Net2Net, batch: Mapping[str, Any], temperature: float | None = None,
                           top_k: int | None = None, callback: Callable[[int], None] | None = None,
                           N: int = 4) -> dict[str, torch.Tensor]:
    temperature = 1.0 if temperature is None else temperature
    top_k = 100 if top_k is None else top_k
    x = c = quant_c = None
    device = next(model.transformer.parameters()).device
    if model.is_tokenized(batch):
        z_indices, c_indices = model.get_codes(batch, N)
        z_indices, c_indices = z_indices.to(device), c_indices.to(device)
        zshape = _code_grid_shape(model, batch, N)
        x = model.decode_to_img(z_indices, zshape)
    else:
        x, c = model.get_xc(batch, N)
        x, c = x.to(device), c.to(device)
        quant_z, z_indices = model.encode_to_z(x)
        quant_c, c_indices = model.encode_to_c(c)
        zshape = quant_z.shape

    n_codes = z_indices.shape[1]
    half = z_indices[:, : n_codes // 2]
    empty = z_indices[:, :0]
    idx = model.sample(half, c_indices, n_codes - half.shape[1], temperature=temperature, sample=True,
                       top_k=top_k, callback=callback)
    samples_half = model.decode_to_img(idx, zshape)
    idx = model.sample(empty, c_indices, n_codes, temperature=temperature, sample=True, top_k=top_k,
                       callback=callback)
    samples_nopix = model.decode_to_img(idx, zshape)
    idx = model.sample(empty, c_indices, n_codes, sample=False, callback=callback)
    samples_det = model.decode_to_img(idx, zshape)

    log = {"inputs": x, "reconstructions": model.decode_to_img(z_indices, zshape)}
    stage = model.cond_stage_model
    layouts = None if c is None else layout_pictures(model, c, tuple(x.shape[-2:]))
    if layouts is not None:  # object layouts (scene models): drawn as boxes
        log["conditioning"] = log["conditioning_rec"] = layouts
    elif (model.cond_stage_key != "image" and c is not None and torch.is_tensor(quant_c)
            and callable(getattr(stage, "decode", None))):
        cond_rec = stage.decode(quant_c)
        if model.cond_stage_key == "segmentation":
            num_classes = cond_rec.shape[1]
            c = labels_to_rgb(stage, c, num_classes)
            cond_rec = labels_to_rgb(stage, cond_rec, num_classes)
        log["conditioning_rec"] = cond_rec
        log["conditioning"] = c
    return {**log, "samples_half": samples_half, "samples_nopix": samples_nopix, "samples_det": samples_det}
