"""The VQGAN training objective: L1 + LPIPS reconstruction, codebook loss, and a PatchGAN whose
generator term is weighted adaptively (Esser et al. 2021, eq. 7).

`forward(..., optimizer_idx=0)` gives the generator (autoencoder) loss, `optimizer_idx=1` the
discriminator loss; the log dicts have the original keys and values (`train/total_loss`, ...).
Under bf16 autocast the perceptual distance, the adaptive weight and all reductions run in float32.
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from taming.config_types import MAX_WIDTH, Between, Width
from taming.losses.discriminator import NLayerDiscriminator, weights_init
from taming.losses.lpips import LPIPS


def adopt_weight(weight: float, global_step: int, threshold: int = 0, value: float = 0.0) -> float:
    """`value` before step `threshold`, `weight` from then on (how disc_start switches the GAN on)."""
    return value if global_step < threshold else weight


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    loss_real = torch.mean(F.relu(1.0 - logits_real.float()))
    loss_fake = torch.mean(F.relu(1.0 + logits_fake.float()))
    return 0.5 * (loss_real + loss_fake)


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (torch.mean(F.softplus(-logits_real.float())) + torch.mean(F.softplus(logits_fake.float())))


DISC_LOSSES = {"hinge": hinge_d_loss, "vanilla": vanilla_d_loss}


class VQLPIPSWithDiscriminator(nn.Module):
    def __init__(self, disc_start: int, codebook_weight: float = 1.0, pixelloss_weight: float = 1.0,
                 disc_num_layers: Annotated[int, Between(0, 16)] = 3, disc_in_channels: Width = 3,
                 disc_factor: float = 1.0, disc_weight: float = 1.0, perceptual_weight: float = 1.0,
                 use_actnorm: bool = False, disc_conditional: bool = False,
                 disc_ndf: Annotated[int, Between(1, MAX_WIDTH // 8)] = 64,  # the last layers are 8x wider
                 disc_loss: Literal["hinge", "vanilla"] = "hinge") -> None:
        super().__init__()
        if disc_loss not in DISC_LOSSES:
            raise ValueError(f"VQLPIPSWithDiscriminator: disc_loss must be one of {sorted(DISC_LOSSES)}, "
                             f"got {disc_loss!r}")
        self.codebook_weight = codebook_weight
        self.pixel_weight = pixelloss_weight  # kept for the original signature; the original never used it
        # The keys `loss.perceptual_loss.*` exist even with perceptual_weight 0 (released checkpoints have
        # them); weight files are read only on the first perceptual forward, which then never happens.
        self.perceptual_loss = LPIPS()
        self.perceptual_weight = perceptual_weight
        self.discriminator = NLayerDiscriminator(input_nc=disc_in_channels, n_layers=disc_num_layers,
                                                 use_actnorm=use_actnorm, ndf=disc_ndf).apply(weights_init)
        self.discriminator_iter_start = disc_start
        self.disc_loss = DISC_LOSSES[disc_loss]
        self.disc_factor = disc_factor
        self.discriminator_weight = disc_weight
        self.disc_conditional = disc_conditional

    def ensure_weights(self) -> None:
        """Read the LPIPS files now if training will need them (raises WeightsNotFound early)."""
        if self.perceptual_weight > 0:
            self.perceptual_loss.ensure_weights()

    def calculate_adaptive_weight(self, nll_loss: torch.Tensor, g_loss: torch.Tensor,
                                  last_layer: torch.Tensor) -> torch.Tensor:
        """||grad nll|| / ||grad g|| at the decoder's last layer, clamped to [0, 1e4], times disc_weight."""
        nll_grads = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
        g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
        # float32 norms: bf16 gradients would round the ratio and overflow its square sums.
        d_weight = torch.linalg.vector_norm(nll_grads.float()) / (torch.linalg.vector_norm(g_grads.float()) + 1e-4)
        d_weight = torch.clamp(d_weight, 0.0, 1e4).detach()
        return d_weight * self.discriminator_weight

    def _logits(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            if self.disc_conditional:
                raise ValueError("VQLPIPSWithDiscriminator: disc_conditional is set but no cond was given")
            return self.discriminator(x.contiguous())
        if not self.disc_conditional:
            raise ValueError("VQLPIPSWithDiscriminator: cond given but disc_conditional is False")
        return self.discriminator(torch.cat((x.contiguous(), cond), dim=1))

    def forward(self, codebook_loss: torch.Tensor, inputs: torch.Tensor, reconstructions: torch.Tensor,
                optimizer_idx: int, global_step: int, last_layer: torch.Tensor | None = None,
                cond: torch.Tensor | None = None, split: str = "train"):
        inputs, reconstructions = inputs.contiguous(), reconstructions.contiguous()
        disc_factor = adopt_weight(self.disc_factor, global_step, threshold=self.discriminator_iter_start)

        if optimizer_idx == 0:
            rec_loss = torch.abs(inputs.float() - reconstructions.float())  # (B, C, H, W)
            if self.perceptual_weight > 0:
                p_loss = self.perceptual_loss(inputs, reconstructions).float()  # (B, 1, 1, 1)
                rec_loss = rec_loss + self.perceptual_weight * p_loss
            else:
                p_loss = torch.zeros(1, device=inputs.device)
            nll_loss = torch.mean(rec_loss)
            logits_fake = self._logits(reconstructions, cond)
            g_loss = -torch.mean(logits_fake.float())
            if nll_loss.requires_grad and g_loss.requires_grad:
                if last_layer is None:
                    raise ValueError("VQLPIPSWithDiscriminator: the generator loss needs last_layer "
                                     "(the decoder's last weight, model.get_last_layer())")
                d_weight = self.calculate_adaptive_weight(nll_loss, g_loss, last_layer)
            else:
                # No graph (validation under no_grad): the original fell back to 0 here too.
                d_weight = torch.tensor(0.0, device=inputs.device)
            loss = nll_loss + d_weight * disc_factor * g_loss + self.codebook_weight * codebook_loss.float().mean()
            log = {
                f"{split}/total_loss": loss.clone().detach().mean(),
                f"{split}/quant_loss": codebook_loss.detach().float().mean(),
                f"{split}/nll_loss": nll_loss.detach().mean(),
                f"{split}/rec_loss": rec_loss.detach().mean(),
                f"{split}/p_loss": p_loss.detach().mean(),
                f"{split}/d_weight": d_weight.detach(),
                f"{split}/disc_factor": torch.tensor(disc_factor),
                f"{split}/g_loss": g_loss.detach().mean(),
            }
            return loss, log

        if optimizer_idx == 1:
            # The original also computed the (unused) L1 + LPIPS terms here; skipping them saves a VGG pass.
            logits_real = self._logits(inputs.detach(), None if cond is None else cond.detach())
            logits_fake = self._logits(reconstructions.detach(), None if cond is None else cond.detach())
            d_loss = disc_factor * self.disc_loss(logits_real, logits_fake)
            log = {
                f"{split}/disc_loss": d_loss.clone().detach().mean(),
                f"{split}/logits_real": logits_real.detach().float().mean(),
                f"{split}/logits_fake": logits_fake.detach().float().mean(),
            }
            return d_loss, log
        raise ValueError(f"VQLPIPSWithDiscriminator: optimizer_idx must be 0 or 1, got {optimizer_idx!r}")
