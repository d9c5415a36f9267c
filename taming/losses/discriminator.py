"""PatchGAN discriminator (pix2pix layout) and ActNorm, with the original state_dict names.

`main.N` numbers every layer of one Sequential, activations included, so the keys are
`main.0` (conv), `main.2`/`main.3` (conv, norm), ... exactly as released checkpoints hold them.
"""
from __future__ import annotations

import torch
from torch import nn


class ActNorm(nn.Module):
    """Per-channel affine `scale * (x + loc)`, initialised from the first training batch
    so that the output has zero mean and unit std per channel (Glow's data-dependent init)."""

    def __init__(self, num_features: int, logdet: bool = False, affine: bool = True,
                 allow_reverse_init: bool = False) -> None:
        assert affine, "ActNorm is always affine"
        super().__init__()
        self.logdet = logdet
        self.loc = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        self.scale = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.allow_reverse_init = allow_reverse_init
        # A buffer, so a loaded checkpoint says the init already happened.
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, B*H*W)
        mean = flat.mean(1)[None, :, None, None]
        std = flat.std(1)[None, :, None, None]
        self.loc.copy_(-mean)
        self.scale.copy_(1 / (std + 1e-6))

    def _maybe_init(self, x: torch.Tensor) -> None:
        if self.training and self.initialized.item() == 0:
            self.initialize(x)
            self.initialized.fill_(1)

    def forward(self, x: torch.Tensor, reverse: bool = False):
        if reverse:
            return self.reverse(x)
        squeeze = x.dim() == 2
        if squeeze:  # (B, C) -> (B, C, 1, 1)
            x = x[:, :, None, None]
        self._maybe_init(x)
        h = self.scale * (x + self.loc)
        if squeeze:
            h = h[:, :, 0, 0]
        if self.logdet:
            height, width = x.shape[2], x.shape[3]
            logdet = height * width * torch.sum(torch.log(torch.abs(self.scale)))
            return h, logdet * torch.ones(x.shape[0], device=x.device)
        return h

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        if self.training and self.initialized.item() == 0 and not self.allow_reverse_init:
            raise RuntimeError("ActNorm: reverse() before any forward() in training mode; "
                               "pass allow_reverse_init=True to initialise from this output")
        squeeze = y.dim() == 2
        if squeeze:
            y = y[:, :, None, None]
        self._maybe_init(y)
        h = y / self.scale - self.loc
        return h[:, :, 0, 0] if squeeze else h


def weights_init(m: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02); BatchNorm weights N(1, 0.02), bias 0. Use with `.apply`."""
    name = type(m).__name__
    if "Conv" in name:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.constant_(m.bias, 0.0)


class NLayerDiscriminator(nn.Module):
    """(B, input_nc, H, W) -> patch logits (B, 1, H', W'); 70x70 receptive field for n_layers=3."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, use_actnorm: bool = False) -> None:
        super().__init__()
        norm = ActNorm if use_actnorm else nn.BatchNorm2d
        # BatchNorm's own shift makes a conv bias redundant; ActNorm's loc is a shift too but the
        # original kept the bias there, and the keys must match.
        bias = use_actnorm
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # the last hidden block keeps the resolution
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                       norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)
