"""First-stage encoder: image (B, in_channels, H, W) -> latent (B, z_channels[*2], H/2^k, W/2^k).

k = len(ch_mult) - 1 downsamplings. Module names (`conv_in`, `down.N.block.M`, `down.N.attn.M`,
`down.N.downsample`, `mid.block_1/attn_1/block_2`, `norm_out`, `conv_out`) are the original's.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .layers import AttnBlock, Downsample, Normalize, ResnetBlock, swish


def _attrs(**modules: nn.Module) -> nn.Module:
    """A plain container whose attributes name the children, as the original's `down.N.block`."""
    holder = nn.Module()
    for name, module in modules.items():
        setattr(holder, name, module)
    return holder


def resolution_level(block_in: int, block_out: int, n_blocks: int, with_attn: bool, temb_ch: int,
          dropout: float) -> nn.Module:
    """One resolution level: `block.N` ResnetBlocks, each followed by `attn.N` when `with_attn`."""
    blocks, attns = nn.ModuleList(), nn.ModuleList()
    for i in range(n_blocks):
        blocks.append(ResnetBlock(in_channels=block_in if i == 0 else block_out, out_channels=block_out,
                                  temb_channels=temb_ch, dropout=dropout))
        if with_attn:
            attns.append(AttnBlock(block_out))
    return _attrs(block=blocks, attn=attns)


def middle(channels: int, dropout: float) -> nn.Module:
    """The lowest-resolution stage of both halves: `block_1`, `attn_1`, `block_2`."""
    return _attrs(
        block_1=ResnetBlock(in_channels=channels, out_channels=channels, temb_channels=0, dropout=dropout),
        attn_1=AttnBlock(channels),
        block_2=ResnetBlock(in_channels=channels, out_channels=channels, temb_channels=0, dropout=dropout),
    )


class Encoder(nn.Module):
    def __init__(self, *, ch: int, out_ch: int, ch_mult: Sequence[int] = (1, 2, 4, 8), num_res_blocks: int,
                 attn_resolutions: Sequence[int], dropout: float = 0.0, resamp_with_conv: bool = True,
                 in_channels: int, resolution: int, z_channels: int, double_z: bool = True, **ignore_kwargs):
        # out_ch and **ignore_kwargs: clients pass one ddconfig dict to both Encoder and Decoder
        super().__init__()
        self.ch = ch
        self.temb_ch = 0  # the first stage has no timestep embedding
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.resolution = resolution
        self.in_channels = in_channels

        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        in_ch_mult = (1,) + tuple(ch_mult)
        curr_res = resolution  # attention placement is decided by the nominal resolution
        self.down = nn.ModuleList()
        for level, mult in enumerate(ch_mult):
            block_in, block_out = ch * in_ch_mult[level], ch * mult
            down = resolution_level(block_in, block_out, num_res_blocks, curr_res in attn_resolutions, self.temb_ch, dropout)
            block_in = block_out
            if level != self.num_resolutions - 1:
                down.downsample = Downsample(block_in, resamp_with_conv)
                curr_res //= 2
            self.down.append(down)

        self.mid = middle(block_in, dropout)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, in_channels, H, W); there are no skip connections, so only the current h is kept
        h = self.conv_in(x)
        for level, down in enumerate(self.down):
            for i, block in enumerate(down.block):
                h = block(h)
                if len(down.attn) > 0:
                    h = down.attn[i](h)
            if level != self.num_resolutions - 1:
                h = down.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(swish(self.norm_out(h), inplace=not torch.is_grad_enabled()))  # (B, z_channels[*2], H/2^k, W/2^k)
