"""Net2NetTransformer: the Lightning shell of the second stage (taming/transformer/net2net.py: Net2Net).

It adds only what training needs: the cross-entropy loss on the image codes, the optimizer, logging,
the FSDP sharding hook and the image logs; model, codes and sampling are the core's. State-dict keys
are the core's, i.e. the original's.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import lightning as L
import torch
import torch.nn.functional as F

from taming.config import ConfigError
from taming.training.callbacks import batch_size
from taming.training.sharding import data_parallel_mesh, shard
from taming.training.transformer_images import log_transformer_images
from taming.transformer.cond_stages import disabled_train
from taming.transformer.net2net import (C_CODES_KEY, Z_CODES_KEY, Net2Net, corrupt_codes, drop_conditioning,
                                        encode_conditioning)


class Net2NetTransformer(Net2Net, L.LightningModule):
    def shared_step(self, batch: Mapping[str, Any], batch_idx: int = 0) -> torch.Tensor:
        z, c = self.get_codes(batch)
        logits, target = self.forward_codes(z, c)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.shared_step(batch, batch_idx)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size(batch),
                 sync_dist=True)  # under DDP the epoch value is every process's, not rank 0's alone
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.shared_step(batch, batch_idx)
        self.log("val/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size(batch),
                 sync_dist=True)
        return loss

    def configure_model(self) -> None:
        mesh = data_parallel_mesh(self)
        if mesh is not None:  # --strategy fsdp: shard the GPT block by block; the frozen stages stay whole
            shard(self.transformer, list(self.transformer.blocks), mesh)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW on the transformer only (the stages are frozen): betas (0.9, 0.95), weight decay 0.01 on
        Linear weights, fused where the device supports it."""
        lr = getattr(self, "learning_rate", None)
        if lr is None:
            raise ConfigError("Net2NetTransformer.learning_rate is not set; the trainer sets it from "
                              "model.base_learning_rate (times batch size, GPUs and accumulation)")
        return self.transformer.configure_optimizer(lr, weight_decay=0.01, betas=(0.9, 0.95))

    @torch.no_grad()
    def log_images(self, batch: Mapping[str, Any], temperature: float | None = None, top_k: int | None = None,
                   callback: Callable[[int], None] | None = None, N: int = 4, **kwargs: Any) -> dict:
        """inputs, reconstructions, conditioning(_rec), samples_half / _nopix (top-k sampling) and _det (argmax).

        Extra keyword arguments of image-logging callbacks (split, pl_module, ...) are accepted and unused."""
        return log_transformer_images(self, batch, temperature=temperature, top_k=top_k, callback=callback, N=N)


__all__ = ["Net2NetTransformer", "disabled_train", "corrupt_codes", "drop_conditioning", "Z_CODES_KEY",
           "C_CODES_KEY", "encode_conditioning"]

