"""Loss of the segmentation VQ model: per-pixel BCE on one-hot label maps plus the codebook loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BCELossWithQuant(nn.Module):
    def __init__(self, codebook_weight: float = 1.0) -> None:
        super().__init__()
        self.codebook_weight = codebook_weight

    def forward(self, qloss: torch.Tensor, target: torch.Tensor, prediction: torch.Tensor, split: str):
        """target: one-hot (B, n_labels, H, W); prediction: logits of the same shape."""
        bce_loss = F.binary_cross_entropy_with_logits(prediction.float(), target.float())
        loss = bce_loss + self.codebook_weight * qloss.float()
        return loss, {
            f"{split}/total_loss": loss.clone().detach().mean(),
            f"{split}/bce_loss": bce_loss.detach().mean(),
            f"{split}/quant_loss": qloss.detach().float().mean(),
        }
