"""What the transformer is conditioned on, and how conditioning becomes codes.

A cond stage is any module with the original "quantize interface": `encode(c)` returns
`(quant, loss, (_, _, indices))`, and the indices are the conditioning codes. The original configs
name one of:

- `"__is_unconditional__"` (or `unconditional: true`): `SOSProvider`, a single start token;
- `"__is_first_stage__"`: the first-stage VQGAN encodes the conditioning too;
- `taming.modules.util.Labelator` (`n_classes`): a class label is its own single code;
- `taming.modules.misc.coord.CoordStage`: a quantized coordinate map (FacesHQ);
- any VQ model (`VQSegmentationModel`, a depth or low-resolution `VQModel`) or other module
  with `encode`, e.g. `DummyCondStage` for pre-built object tokens (COCO, Open Images).

Every stage is frozen: eval mode that `.train()` cannot undo, and no gradients.
"""
from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from taming.config import ConfigError, instantiate_from_config

UNCONDITIONAL = "__is_unconditional__"
FIRST_STAGE = "__is_first_stage__"


def disabled_train(self: nn.Module, mode: bool = True) -> nn.Module:
    """Stands in for `module.train` on frozen stages, so `model.train()` leaves them in eval mode."""
    return self


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode for good (dropout off, norms fixed) and no gradients."""
    module.eval()
    # a partial, not a bound method: the model stays picklable (bound methods pickle by name)
    module.train = functools.partial(disabled_train, module)
    module.requires_grad_(False)
    return module


class Labelator(nn.Module):
    """Class-conditional models: the class label (B,) is used directly as one code (B, 1)."""

    def __init__(self, n_classes: int, quantize_interface: bool = True) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.quantize_interface = quantize_interface

    def encode(self, c: torch.Tensor) -> Any:
        c = c.reshape(-1)[:, None]  # (B, 1)
        if self.quantize_interface:
            return c, None, [None, None, c.long()]
        return c


class SOSProvider(nn.Module):
    """The cond stage of unconditional models: every image gets the same single start token."""

    def __init__(self, sos_token: int, quantize_interface: bool = True):
        super().__init__()
        self.sos_token = sos_token
        self.quantize_interface = quantize_interface

    def encode(self, x: torch.Tensor):
        """x (B, ...) -> c (B, 1) long filled with sos_token; as a quantizer's (c, None, [None, None, c])."""
        c = torch.full((x.shape[0], 1), int(self.sos_token), dtype=torch.long, device=x.device)
        if self.quantize_interface:
            return c, None, [None, None, c]
        return c


class CoordStage(nn.Module):
    """The FacesHQ "conditioning model", without weights: it area-downsamples a (B, 1, H, W)
    coordinate map in [0, 1] by `down_factor` and rounds it onto `n_embed` integer codes."""

    def __init__(self, n_embed: int, down_factor: int) -> None:
        super().__init__()
        self.n_embed = n_embed
        self.down_factor = down_factor

    def encode(self, c: torch.Tensor):
        """(B, 1, H, W) in [0, 1] -> (quant (B, 1, H/f, W/f) float codes, None, (None, None, long codes))."""
        if c.dim() != 4 or c.shape[1] != 1:
            raise ValueError(f"CoordStage.encode expects (B, 1, H, W) coordinates, got {tuple(c.shape)}")
        if c.min() < 0.0 or c.max() > 1.0:
            raise ValueError(f"CoordStage.encode expects values in [0, 1], got [{c.min():.4g}, {c.max():.4g}]")
        c = F.interpolate(c, scale_factor=1 / self.down_factor, mode="area").clamp(0.0, 1.0)
        c_quant = (self.n_embed * c).round()
        return c_quant, None, (None, None, c_quant.long())

    def decode(self, c: torch.Tensor) -> torch.Tensor:
        """Codes (B, 1, h, w) -> coordinates (B, 1, h*f, w*f), nearest upsampling."""
        return F.interpolate(c / self.n_embed, scale_factor=self.down_factor, mode="nearest")


class DummyCondStage(nn.Module):
    """Conditioning that is already tokens (the COCO / Open Images object-bbox builders): no weights,
    encode passes the tokens through in a VQ model's return format."""

    def __init__(self, conditional_key: str) -> None:
        super().__init__()
        self.conditional_key = conditional_key

    def encode(self, c: torch.Tensor):
        """Tokens (B, L) -> (c, None, (None, None, c)), as a VQ model returns (quant, loss, info)."""
        return c, None, (None, None, c)

    def decode(self, c: torch.Tensor) -> torch.Tensor:
        return c

    def to_rgb(self, c: torch.Tensor) -> torch.Tensor:
        return c


def build_cond_stage(config: Any, first_stage: nn.Module, sos_token: int, unconditional: bool,
                     where: str = "model.params.cond_stage_config") -> tuple[nn.Module, bool]:
    """The cond stage a config names, frozen; and whether the model is unconditional.

    Checked in the original's order: reusing the first stage wins over `unconditional`.
    """
    if config == FIRST_STAGE:
        return first_stage, unconditional
    if unconditional or config == UNCONDITIONAL:
        return SOSProvider(sos_token), True
    if isinstance(config, str):
        raise ConfigError(f"{where}: {config!r} is neither {UNCONDITIONAL!r}, {FIRST_STAGE!r} "
                          "nor a target/params mapping")
    stage = instantiate_from_config(config, where=where)
    if not callable(getattr(stage, "encode", None)):
        raise ConfigError(f"{where}: {type(stage).__name__} has no encode() method, so it cannot give "
                          "conditioning codes")
    return freeze(stage), False


def encode_codes(stage: nn.Module, x: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """Run a stage's `encode` and return (quant, codes (B, N)) whatever the index layout."""
    quant, _, info = stage.encode(x)
    indices = info[2]
    return quant, indices.reshape(x.shape[0], -1).long()


__all__ = ["UNCONDITIONAL", "FIRST_STAGE", "disabled_train", "freeze", "Labelator", "SOSProvider", "CoordStage",
           "DummyCondStage",
           "build_cond_stage", "encode_codes"]
