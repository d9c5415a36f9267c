"""First-stage models for inference, built from a training config's `target`/`params`.

A trained config names a Lightning shell (`taming.models.vqgan.VQModel` & co, taming/training/
first_stage.py). `taming.checkpoint.load_model` builds these classes instead: they take the shells'
constructor arguments, hold the same weights under the same keys (the colour projection
`colorize` included) and leave out the training loss, so inference imports no training code.
A checkpoint's `loss.*` weights are then dropped, and logged, by taming.checkpoint.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from taming.checkpoint import init_from_ckpt
from taming.config_types import Width

from .codebook import CodebookSize
from .vqgan import VQGAN, EMAVQGAN, GumbelVQGAN


class _FromTrainingConfig:
    """Takes a shell's arguments; those only training reads (loss, monitor, schedules) are unused."""

    def __init__(self, ddconfig: Mapping[str, Any], n_embed: CodebookSize, embed_dim: Width,
                 lossconfig: Mapping[str, Any] | None = None, ckpt_path: str | None = None,
                 ignore_keys: Sequence[str] = (), image_key: str = "image", colorize_nlabels: int | None = None,
                 n_labels: int | None = None, monitor: str | None = None, accumulate_grad_batches: int = 1,
                 temperature_scheduler_config: Mapping[str, Any] | None = None, **core_options: Any):
        super().__init__(ddconfig, n_embed, embed_dim, **core_options)
        self.image_key = image_key
        labels = n_labels if n_labels is not None else colorize_nlabels
        if labels is not None:  # the label colouring of segmentation models, an original state_dict key
            self.register_buffer("colorize", torch.randn(3, labels, 1, 1))
        if ckpt_path is not None:
            init_from_ckpt(self, ckpt_path, ignore_keys=ignore_keys)


class VQModel(_FromTrainingConfig, VQGAN):
    """Also stands for VQSegmentationModel (n_labels) and VQNoDiscModel: the same weights without loss."""


class GumbelVQ(_FromTrainingConfig, GumbelVQGAN):
    pass


class EMAVQ(_FromTrainingConfig, EMAVQGAN):
    pass


VQSegmentationModel = VQNoDiscModel = VQModel

__all__ = ["VQModel", "GumbelVQ", "EMAVQ", "VQSegmentationModel", "VQNoDiscModel"]
