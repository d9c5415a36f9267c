"""The first-stage core: encoder -> quant_conv -> quantize -> post_quant_conv -> decoder.

Plain nn.Modules with the original VQModel's attribute names and method semantics; the Lightning
shells (taming/training) inherit from these, e.g. `class VQModel(VQGAN, L.LightningModule)`.
`VQGAN.__init__` calls `super().__init__()` so that in such a class the MRO reaches
LightningModule's constructor.

Variants swap the quantizer through `make_quantizer` and the width of quant_conv through
`quant_conv_channels`: GumbelVQGAN (codes from a Gumbel-softmax over logits) and EMAVQGAN
(codebook by exponential moving averages).

Fast paths (the default float32 path is the exact one the fixtures check):
- `encode_to_codes(x, fast=True)` / `decode_codes(codes, fast=True)`: channels_last activations and
  bf16 autocast for the convolutions, float32 weights kept (usable inside training code);
- `prepare_fast()` once stores the weights channels_last (same values, same state_dict), and
  `prepare_fast(torch.bfloat16)` also stores the convolution weights in bf16 for inference, which
  saves autocast's per-call weight casts. The quantizer always stays float32: its distances decide
  the codes.
`encode`/`decode` cast their input to the weights' dtype, so a bf16-prepared model takes float
images and codes as before. Which is fastest depends on the CPU: taming.precision chooses
(BENCHMARKS.md "First stage").
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Mapping

import torch
from torch import nn

from taming.config import ConfigError, accepted_params, to_plain
from taming.config_types import Width, check_value, did_you_mean

from .codebook import CodebookSize
from .ddconfig import DDConfig
from .decoder import Decoder
from .ema import EMAVectorQuantizer
from .encoder import Encoder
from .gumbel import GumbelQuantize
from .quantize import VectorQuantizer2


def _check_options(model: nn.Module, cls: type, options: Mapping[str, Any], fixed: set[str]) -> None:
    """Keys the model did not take go to the quantizer: each must be one of its options, else one
    error naming the key, the closest model parameter or option, and where it was written."""
    names = accepted_params(cls)[0] - fixed
    model_names = accepted_params(type(model))[0]
    for key in options:
        if key not in names:
            raise ConfigError(f"model.params: unknown key {key!r}{did_you_mean(key, names | model_names)} "
                              f"(neither a {type(model).__name__} parameter nor a {cls.__name__} option: "
                              f"{', '.join(sorted(names))})")


class VQGAN(nn.Module):
    def __init__(self, ddconfig: DDConfig, n_embed: CodebookSize, embed_dim: Width, remap: str | None = None,
                 sane_index_shape: bool = False, **quantizer_options: Any):
        super().__init__()  # cooperative: reaches LightningModule in `class VQModel(VQGAN, L.LightningModule)`
        ddconfig = to_plain(ddconfig)
        if not isinstance(ddconfig, Mapping) or "z_channels" not in ddconfig:
            raise ConfigError(f"ddconfig: expected a mapping with the encoder/decoder settings "
                              f"(ch, ch_mult, z_channels, ...), got {ddconfig!r}")
        check_value(ddconfig, DDConfig, "ddconfig", ConfigError)  # built from a config, the path was checked already
        self.n_embed, self.embed_dim = n_embed, embed_dim
        z_channels = ddconfig["z_channels"]
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quantize = self.make_quantizer(z_channels, n_embed, embed_dim, remap=remap,
                                            sane_index_shape=sane_index_shape, **quantizer_options)
        # 1x1 convs between the autoencoder's latent width and the quantizer's
        self.quant_conv = nn.Conv2d(z_channels, self.quant_conv_channels(z_channels, embed_dim), 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)

    # -- hooks for variants -------------------------------------------------------------------
    def make_quantizer(self, z_channels: int, n_embed: int, embed_dim: int, *, remap, sane_index_shape,
                       **options) -> nn.Module:
        _check_options(self, VectorQuantizer2, options, {"n_e", "e_dim", "beta", "remap", "sane_index_shape"})
        return VectorQuantizer2(n_embed, embed_dim, beta=0.25, remap=remap, sane_index_shape=sane_index_shape,
                                **options)

    def quant_conv_channels(self, z_channels: int, embed_dim: int) -> int:
        return embed_dim

    # -- the original API ---------------------------------------------------------------------
    def encode(self, x: torch.Tensor):
        """x (B, C, H, W) -> (quant (B, embed_dim, h, w), emb_loss, info); indices in info[2]."""
        h = self.quant_conv(self.encoder(x.to(self.encoder.conv_in.weight.dtype)))
        return self.quantize(h)

    def decode(self, quant: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(quant.to(self.post_quant_conv.weight.dtype)))

    def decode_code(self, code_b: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w), or (B, h*w) for a square grid -> image (B, out_ch, H, W)."""
        return self.decode(self.codes_to_quant(code_b))

    def forward(self, input: torch.Tensor):
        quant, diff, _ = self.encode(input)
        return self.decode(quant), diff

    def to_rgb(self, x: torch.Tensor) -> torch.Tensor:
        """Label maps (B, n_labels, H, W) -> RGB in [-1, 1] by a fixed random projection."""
        if not hasattr(self, "colorize"):
            self.register_buffer("colorize", torch.randn(3, x.shape[1], 1, 1).to(x))
        x = nn.functional.conv2d(x, weight=self.colorize)
        return 2.0 * (x - x.min()) / (x.max() - x.min()) - 1.0

    def get_last_layer(self) -> torch.Tensor:
        """Weight the adaptive GAN weight is computed against."""
        return self.decoder.conv_out.weight

    # -- codes --------------------------------------------------------------------------------
    @property
    def downsample_factor(self) -> int:
        """Pixels per code along each side: each resolution level after the first halves the size."""
        return 2 ** (self.encoder.num_resolutions - 1)

    def codes_to_quant(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, h, w) or (B, h*w) square code grid -> quantized latent (B, embed_dim, h, w)."""
        if codes.dim() == 2:
            side = math.isqrt(codes.shape[1])
            if side * side != codes.shape[1]:
                raise ValueError(f"codes of shape {tuple(codes.shape)}: a flat code row must be a square grid; "
                                 "pass (B, h, w) for non-square latents")
            codes = codes.reshape(codes.shape[0], side, side)
        if codes.dim() != 3:
            raise ValueError(f"codes must be (B, h, w) or (B, h*w), got shape {tuple(codes.shape)}")
        b, h, w = codes.shape
        return self.quantize.get_codebook_entry(codes.reshape(-1), (b, h, w, self.embed_dim))

    @contextlib.contextmanager
    def _fast(self, x: torch.Tensor, fast: bool):
        """fast: channels_last input and, for float32 weights, bf16 autocast."""
        if not fast:
            yield x
            return
        x = x.contiguous(memory_format=torch.channels_last)
        autocast = self.post_quant_conv.weight.dtype == torch.float32
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            yield x

    @torch.no_grad()
    def encode_to_codes(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        """Images (B, C, H, W) -> code grid (B, h, w) long. fast: bf16 convolutions, fp32 distances."""
        with self._fast(x, fast) as x:
            quant, _, info = self.encode(x)
        return info[2].reshape(quant.shape[0], quant.shape[2], quant.shape[3])  # any index layout -> grid

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor, fast: bool = False) -> torch.Tensor:
        """Code grid (B, h, w) -> images (B, out_ch, H, W) float32."""
        quant = self.codes_to_quant(codes)
        with self._fast(quant, fast) as quant:
            return self.decode(quant).float().contiguous()

    def prepare_fast(self, dtype: torch.dtype | None = None) -> "VQGAN":
        """Store weights channels_last (same values and state_dict keys); with `dtype` (e.g.
        torch.bfloat16) also store encoder, decoder and the 1x1 convs in that dtype: inference only,
        the quantizer stays float32. Which one a `--precision` means: taming.precision.prepare_first_stage."""
        self.to(memory_format=torch.channels_last)
        if dtype is not None:
            for part in (self.encoder, self.decoder, self.quant_conv, self.post_quant_conv):
                part.to(dtype)
        return self


class GumbelVQGAN(VQGAN):
    """Codes from GumbelQuantize; quant_conv keeps z_channels because `quantize.proj` maps
    z_channels to the n_embed logits."""

    def __init__(self, ddconfig: DDConfig, n_embed: CodebookSize, embed_dim: Width, remap: str | None = None,
                 kl_weight: float = 1e-8, **quantizer_options: Any):
        super().__init__(ddconfig, n_embed, embed_dim, remap=remap, kl_weight=kl_weight, **quantizer_options)

    def make_quantizer(self, z_channels, n_embed, embed_dim, *, remap, sane_index_shape, **options):
        _check_options(self, GumbelQuantize, options, {"num_hiddens", "embedding_dim", "n_embed", "remap"})
        # sane_index_shape is moot: Gumbel indices are always (B, h, w)
        return GumbelQuantize(z_channels, embed_dim, n_embed=n_embed, remap=remap, **options)

    def quant_conv_channels(self, z_channels: int, embed_dim: int) -> int:
        return z_channels


class EMAVQGAN(VQGAN):
    """Codebook learned by exponential moving averages (EMAVectorQuantizer, beta 0.25)."""

    def make_quantizer(self, z_channels, n_embed, embed_dim, *, remap, sane_index_shape, **options):
        _check_options(self, EMAVectorQuantizer, options, {"n_embed", "embedding_dim", "beta", "remap"})
        return EMAVectorQuantizer(n_embed=n_embed, embedding_dim=embed_dim, beta=0.25, remap=remap, **options)
