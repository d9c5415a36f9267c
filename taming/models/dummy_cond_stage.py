"""DummyCondStage: conditioning that is already tokens (e.g. the COCO/Open Images object-bbox
builders). It has no weights; encode passes the tokens through in the VQ model's return format."""
from __future__ import annotations

import torch
from torch import nn


class DummyCondStage(nn.Module):
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
