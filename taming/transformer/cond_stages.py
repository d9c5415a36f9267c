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


def build_cond_stage(config: Any, first_stage: nn.Module, sos_token: int, unconditional: bool,
                     where: str = "model.params.cond_stage_config") -> tuple[nn.Module, bool]:
    """The cond stage a config names, frozen; and whether the model is unconditional.

    Checked in the original's order: reusing the first stage wins over `unconditional`.
    """
    if config == FIRST_STAGE:
        return first_stage, unconditional
    if unconditional or config == UNCONDITIONAL:
        # imported here so taming.modules.util may import this module (it re-exports Labelator)
        from taming.modules.util import SOSProvider

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


__all__ = ["UNCONDITIONAL", "FIRST_STAGE", "disabled_train", "freeze", "Labelator",
           "build_cond_stage", "encode_codes"]
