"""Net2Net: the second stage, a GPT over first-stage codes given conditioning codes (a plain nn.Module).

It holds, under the original's state_dict names, `first_stage_model` (frozen VQGAN: images <-> codes),
`cond_stage_model` (frozen, conditioning -> codes, see cond_stages.py), `permuter` (code order) and
`transformer` (GPT). The sequence is `[c ; z]`; `forward` gives the logits of every image code.
The Lightning shell `taming.training.transformer.Net2NetTransformer` adds the loss, the optimizer and
logging; inference (sampling, the app, tokenize, checkpoint.load_model) uses this class alone.

Beyond the original:
- pre-tokenized training: a batch holding `z_indices` (and `c_indices`) codes, in raster order, is
  used as is and skips both frozen stages (see `taming tokenize`);
- classifier-free guidance: `cfg_dropout` replaces the conditioning of that fraction of training
  examples by the null conditioning, every code set to `cfg_null_token`; `sample(cfg_scale=...)`
  then mixes conditional and null logits. The null token must be a code the transformer knows
  (`< vocab_size`) and the cond stage never emits: for a new model give the GPT one extra code
  (`vocab_size = n_embed + 1`, `cfg_null_token = n_embed`). With `cfg_dropout: 0` (the default)
  nothing changes and the original checkpoints load unchanged;
- sampling runs through the key/value-cached sampler of taming/sampling.py.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from taming.checkpoint import init_from_ckpt as load_checkpoint_into
from taming.config import ConfigError, instantiate_from_config, to_plain
from taming.images import channels_first
from taming.transformer.decode import generate, sample_logits
from taming.transformer.cond_stages import build_cond_stage, encode_codes, freeze

log = logging.getLogger(__name__)

# Pre-tokenized batches (taming/data/codes.py): image codes in raster order, (B, h, w) or (B, h*w),
# and conditioning codes (B, ...) flattened per example; class labels stay under cond_stage_key.
Z_CODES_KEY = "z_indices"
C_CODES_KEY = "c_indices"
IDENTITY_PERMUTER = {"target": "taming.transformer.permuter.Identity"}
WHERE = "model.params"


def corrupt_codes(z: torch.Tensor, pkeep: float, vocab_size: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep each code with probability pkeep, else replace it by a uniformly random code (original)."""
    keep = torch.rand(z.shape, device=z.device, generator=generator) < pkeep
    random = torch.randint(0, vocab_size, z.shape, device=z.device, generator=generator, dtype=z.dtype)
    return torch.where(keep, z, random)


def drop_conditioning(c: torch.Tensor, p: float, null_token: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace the whole conditioning of each example (row of c, (B, N)) by null codes with probability p."""
    drop = torch.rand(c.shape[0], 1, device=c.device, generator=generator) < p  # (B, 1)
    return torch.where(drop, torch.full_like(c, null_token), c)


class Net2Net(nn.Module):
    z_codes_key, c_codes_key = Z_CODES_KEY, C_CODES_KEY

    def __init__(self, transformer_config: Any, first_stage_config: Any, cond_stage_config: Any,
                 permuter_config: Any = None, ckpt_path: str | None = None, ignore_keys: Iterable[str] = (),
                 first_stage_key: str = "image", cond_stage_key: str = "depth", downsample_cond_size: int = -1,
                 pkeep: float = 1.0, sos_token: int = 0, unconditional: bool = False,
                 cfg_dropout: float = 0.0, cfg_null_token: int | None = None):
        super().__init__()  # cooperative: reaches LightningModule in the Net2NetTransformer shell
        self.first_stage_key = first_stage_key
        self.cond_stage_key = cond_stage_key
        self.sos_token = sos_token
        if ckpt_path is not None:  # the full checkpoint holds the stages' weights too
            first_stage_config = _without_ckpt_path(first_stage_config, "first_stage_config")
            cond_stage_config = _without_ckpt_path(cond_stage_config, "cond_stage_config")
        # Constructed in the original's order, so state_dict keys come in its order too.
        self.first_stage_model = freeze(instantiate_from_config(first_stage_config, f"{WHERE}.first_stage_config"))
        self.cond_stage_model, self.be_unconditional = build_cond_stage(
            cond_stage_config, self.first_stage_model, sos_token, unconditional, f"{WHERE}.cond_stage_config")
        if self.be_unconditional:
            self.cond_stage_key = first_stage_key  # the SOS provider only reads the batch size
        self.permuter = instantiate_from_config(permuter_config or IDENTITY_PERMUTER, f"{WHERE}.permuter_config")
        self.transformer = instantiate_from_config(transformer_config, f"{WHERE}.transformer_config")
        self.downsample_cond_size = downsample_cond_size
        self.pkeep = pkeep
        self.cfg_dropout = cfg_dropout
        self.cfg_null_token = cfg_null_token
        self._check_options()
        if ckpt_path is not None:
            self.init_from_ckpt(ckpt_path, ignore_keys=ignore_keys)

    def _check_options(self) -> None:
        if not 0.0 <= self.pkeep <= 1.0:
            raise ConfigError(f"{WHERE}.pkeep: must be in [0, 1], got {self.pkeep}")
        if not 0.0 <= self.cfg_dropout < 1.0:
            raise ConfigError(f"{WHERE}.cfg_dropout: must be in [0, 1), got {self.cfg_dropout}")
        if self.cfg_null_token is not None and not 0 <= self.cfg_null_token < self.vocab_size:
            raise ConfigError(f"{WHERE}.cfg_null_token: {self.cfg_null_token} is not a code of the transformer "
                              f"(vocab_size {self.vocab_size}); give the GPT one extra code and use it")
        if self.cfg_dropout > 0:
            if self.be_unconditional:
                raise ConfigError(f"{WHERE}.cfg_dropout: an unconditional model has no conditioning to drop")
            if self.cfg_null_token is None:
                raise ConfigError(f"{WHERE}.cfg_null_token: required when cfg_dropout > 0 (the code that "
                                  "stands for 'no conditioning', e.g. vocab_size - 1 of a GPT with one extra code)")

    @property
    def vocab_size(self) -> int:
        return self.transformer.vocab_size

    def init_from_ckpt(self, path: str, ignore_keys: Iterable[str] = ()) -> None:
        """Load a whole Net2Net(Transformer) checkpoint, strictly (original or ours)."""
        load_checkpoint_into(self, path, ignore_keys=ignore_keys)

    # ---- codes -------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_to_z(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, C, H, W) -> (quant_z (B, D, h, w), codes (B, h*w) in transformer order)."""
        quant_z, indices = encode_codes(self.first_stage_model, x)
        return quant_z, self.permuter(indices)

    @torch.no_grad()
    def encode_to_c(self, c: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """Conditioning (images, maps, labels) -> (quant_c, codes (B, Nc))."""
        if self.downsample_cond_size > -1:
            c = F.interpolate(c, size=(self.downsample_cond_size, self.downsample_cond_size))
        return encode_codes(self.cond_stage_model, c)

    @torch.no_grad()
    def decode_to_img(self, index: torch.Tensor, zshape: Iterable[int]) -> torch.Tensor:
        """Codes (B, h*w) in transformer order and zshape (B, D, h, w) -> images (B, C, H, W)."""
        index = self.permuter(index, reverse=True)
        B, _, h, w = zshape
        return self.first_stage_model.decode(self.first_stage_model.codes_to_quant(index.reshape(B, h, w)))

    def null_conditioning(self, c_indices: torch.Tensor) -> torch.Tensor:
        if self.cfg_null_token is None:
            raise ConfigError(f"{WHERE}.cfg_null_token: not set, so this model has no null conditioning "
                              "for classifier-free guidance")
        return torch.full_like(c_indices, self.cfg_null_token)

    # ---- training objective ------------------------------------------------------------------
    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> logits (B, Nz, V) of every image code given `[c ; z[:-1]]`, and the target codes (B, Nz)."""
        _, z_indices = self.encode_to_z(x)
        _, c_indices = self.encode_to_c(c)
        return self.forward_codes(z_indices, c_indices)

    def forward_codes(self, z_indices: torch.Tensor, c_indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The objective on codes: z (B, Nz) in transformer order, c (B, Nc)."""
        inputs = z_indices
        if self.training:
            if self.pkeep < 1.0:
                inputs = corrupt_codes(z_indices, self.pkeep, self.vocab_size)
            if self.cfg_dropout > 0:
                c_indices = drop_conditioning(c_indices, self.cfg_dropout, self.cfg_null_token)
        cz = torch.cat((c_indices, inputs), dim=1)  # (B, Nc + Nz)
        # output i predicts position i + 1: the image codes start at output Nc - 1
        logits, _ = self.transformer(cz[:, :-1], logits_from=c_indices.shape[1] - 1)  # (B, Nz, V)
        return logits, z_indices

    # ---- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, x: torch.Tensor, c: torch.Tensor, steps: int, temperature: float = 1.0, sample: bool = False,
               top_k: int | None = None, callback: Callable[[int], None] | None = None, *,
               top_p: float | None = None, generator: torch.Generator | None = None,
               cfg_scale: float | None = None) -> torch.Tensor:
        """Continue codes x (B, k) for `steps` codes given conditioning codes c (B, Nc) -> (B, k + steps).

        The original signature (`sample=False` is argmax; callback(k) after code k); it runs the
        key/value-cached sampler, with the transformer in eval mode. `cfg_scale` (classifier-free
        guidance) mixes in the logits given the null conditioning: 1 is plain conditional sampling.
        """
        if steps == 0:
            return x
        if top_k is not None:
            top_k = min(top_k, self.vocab_size)  # the original's default of 100 on small vocabularies
        if self.pkeep <= 0.0:
            return self._sample_one_pass(x, c, temperature, sample, top_k, generator)

        prefix = torch.cat((c, x), dim=1)  # (B, Nc + k)
        if cfg_scale == 1.0:
            cfg_scale = None  # guidance 1 is plain conditional sampling
        uncond = None if cfg_scale is None else torch.cat((self.null_conditioning(c), x), dim=1)
        new = generate(self.transformer, prefix, steps, temperature=temperature, top_k=top_k, top_p=top_p,
                       greedy=not sample, generator=generator, cfg_scale=cfg_scale, uncond_codes=uncond,
                       callback=None if callback is None else (lambda k, _codes: callback(k)))
        return torch.cat((x, new), dim=1)

    def _sample_one_pass(self, x, c, temperature, sample, top_k, generator):
        """The original's pkeep=0 mode: its inputs were pure noise, so all codes come from one pass,
        fed the conditioning codes as stand-in inputs."""
        seq = torch.cat((c, x), dim=1)
        seq = torch.cat((seq, c[:, x.shape[1]:-1]), dim=1)
        was_training = self.transformer.training
        self.transformer.eval()
        try:
            logits = self.transformer(seq)[0]  # (B, T, V)
        finally:
            self.transformer.train(was_training)
        ix = sample_logits(logits.flatten(0, 1), temperature, top_k, greedy=not sample, generator=generator)
        ix = ix.view(logits.shape[:2])  # (B, T)
        return ix[:, c.shape[1] - 1:]

    # ---- batches -----------------------------------------------------------------------------
    def get_input(self, key: str, batch: Mapping[str, Any]) -> torch.Tensor:
        """The original layout conversion: (B, H, W[, C]) channels-last -> (B, C, H, W) float."""
        if key not in batch:
            raise KeyError(f"{type(self).__name__}: batch has no {key!r} (keys: {', '.join(map(str, batch))}); "
                           "check first_stage_key / cond_stage_key")
        x = batch[key]
        if x.ndim in (3, 4):  # images and maps
            return channels_first(x)
        if x.dtype == torch.double:
            x = x.float()
        return x

    def get_xc(self, batch: Mapping[str, Any], N: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.get_input(self.first_stage_key, batch)
        c = self.get_input(self.cond_stage_key, batch)
        if N is not None:
            x, c = x[:N], c[:N]
        return x, c

    def is_tokenized(self, batch: Mapping[str, Any]) -> bool:
        return self.z_codes_key in batch

    def get_codes(self, batch: Mapping[str, Any], N: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z codes (B, Nz) in transformer order, c codes (B, Nc)) from a batch, pre-tokenized or not."""
        if not self.is_tokenized(batch):
            x, c = self.get_xc(batch, N)
            return self.encode_to_z(x)[1], self.encode_to_c(c)[1]
        z = torch.as_tensor(batch[self.z_codes_key])[:N].long()
        z = self.permuter(z.reshape(z.shape[0], -1))
        if self.be_unconditional:
            c = torch.full((z.shape[0], 1), self.sos_token, dtype=torch.long, device=z.device)
        elif self.c_codes_key in batch:
            c = torch.as_tensor(batch[self.c_codes_key])[:N].long()
            c = c.reshape(c.shape[0], -1)
        elif self.cond_stage_key in batch:  # e.g. class labels: the cond stage is cheap, run it
            c = self.encode_to_c(self.get_input(self.cond_stage_key, batch)[:N])[1]
        else:
            raise KeyError(f"{type(self).__name__}: pre-tokenized batch has {self.z_codes_key!r} but neither "
                           f"{self.c_codes_key!r} nor {self.cond_stage_key!r} for a conditional model")
        return z, c.to(z.device)


def _without_ckpt_path(config: Any, name: str) -> Any:
    """A stage config without its own ckpt_path: loading the whole model's checkpoint overwrites
    (strictly) every stage weight, so the stage's file (often a path on the authors' machine,
    e.g. logs/2020-11-09T13-33-36_faceshq_vqgan/...) is neither read nor required."""
    config = to_plain(config)
    params = config.get("params") if isinstance(config, dict) else None
    if not isinstance(params, dict) or params.get("ckpt_path") is None:
        return config
    log.info("%s.%s.params.ckpt_path %s not read: model.params.ckpt_path holds these weights",
             WHERE, name, params["ckpt_path"])
    return {**config, "params": {k: v for k, v in params.items() if k != "ckpt_path"}}


@torch.no_grad()
def encode_conditioning(model: torch.nn.Module, c: torch.Tensor) -> torch.Tensor:
    """A transformer's conditioning (maps, labels; anything for an unconditional model) -> its codes:
    (B, hc, wc) when they lie on a spatial grid, else (B, Nc) (class labels, the SOS token)."""
    quant_c, c_codes = model.encode_to_c(c)
    if torch.is_tensor(quant_c) and quant_c.dim() == 4 and quant_c.shape[2] * quant_c.shape[3] == c_codes.shape[1]:
        c_codes = c_codes.reshape(c_codes.shape[0], *quant_c.shape[2:])  # (B, hc, wc)
    return c_codes


__all__ = ["Net2Net", "corrupt_codes", "drop_conditioning", "encode_conditioning", "Z_CODES_KEY", "C_CODES_KEY"]
