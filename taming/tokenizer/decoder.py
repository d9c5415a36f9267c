"""First-stage decoder: latent (B, z_channels, h, w) -> image (B, out_ch, h*2^k, w*2^k).

Module names (`conv_in`, `mid.*`, `up.N.block.M`, `up.N.attn.M`, `up.N.upsample`, `norm_out`,
`conv_out`) are the original's; `up` is indexed by resolution level (0 = full resolution) even
though it runs from the coarsest level up, as in the original checkpoints.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .encoder import middle, resolution_level
from .layers import Normalize, Upsample, swish


class Decoder(nn.Module):
    def __init__(self, *, ch: int, out_ch: int, ch_mult: Sequence[int] = (1, 2, 4, 8), num_res_blocks: int,
                 attn_resolutions: Sequence[int], dropout: float = 0.0, resamp_with_conv: bool = True,
                 in_channels: int, resolution: int, z_channels: int, give_pre_end: bool = False,
                 **ignorekwargs):
        # in_channels, double_z and **ignorekwargs: clients pass one ddconfig dict to both halves
        super().__init__()
        self.ch = ch
        self.temb_ch = 0
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.resolution = resolution
        self.in_channels = in_channels
        self.give_pre_end = give_pre_end

        block_in = ch * ch_mult[-1]
        curr_res = resolution // 2 ** (self.num_resolutions - 1)
        self.z_shape = (1, z_channels, curr_res, curr_res)  # nominal; non-square latents also work

        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = middle(block_in, dropout)
        ups: list[nn.Module] = []
        for level in reversed(range(self.num_resolutions)):
            block_out = ch * ch_mult[level]
            up = resolution_level(block_in, block_out, num_res_blocks + 1, curr_res in attn_resolutions, self.temb_ch, dropout)
            block_in = block_out
            if level != 0:
                up.upsample = Upsample(block_in, resamp_with_conv)
                curr_res *= 2
            ups.insert(0, up)  # keep index == level, as the original's state_dict
        self.up = nn.ModuleList(ups)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.last_z_shape = z.shape  # the original records it; some clients read it
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in reversed(range(self.num_resolutions)):
            up = self.up[level]
            for i, block in enumerate(up.block):
                h = block(h)
                if len(up.attn) > 0:
                    h = up.attn[i](h)
            if level != 0:
                h = up.upsample(h)
        if self.give_pre_end:
            return h
        return self.conv_out(swish(self.norm_out(h), inplace=not torch.is_grad_enabled()))  # (B, out_ch, H, W)
