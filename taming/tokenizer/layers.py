"""Building blocks of the first-stage encoder and decoder.

Attribute names (`norm1`, `conv1`, `nin_shortcut`, `q`, `k`, `v`, `proj_out`, `conv`) are the
original checkpoint's state_dict names; renaming one would make `strict=False` loaders in
downstream projects silently skip weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def Normalize(in_channels: int, num_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the original's 32 groups and eps 1e-6 (PyTorch's default eps is 1e-5)."""
    return nn.GroupNorm(num_groups=num_groups, num_channels=in_channels, eps=1e-6, affine=True)


def swish(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """x * sigmoid(x); F.silu is the same function as one fused kernel."""
    return F.silu(x, inplace=inplace)


def _no_grad() -> bool:
    """Without autograd, fresh intermediates may be overwritten in place: same numbers, less
    memory traffic (the elementwise ops are memory-bound on CPU)."""
    return not torch.is_grad_enabled()


# The original module calls it `nonlinearity`; clients import it under that name.
nonlinearity = swish


class ResnetBlock(nn.Module):
    """norm-swish-conv twice with a residual; a 1x1 (or 3x3) shortcut when the width changes."""

    def __init__(self, *, in_channels: int, out_channels: int | None = None, conv_shortcut: bool = False,
                 dropout: float = 0.0, temb_channels: int = 512):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.use_conv_shortcut = conv_shortcut
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        if temb_channels > 0:  # the first stage passes 0: no time embedding, no temb_proj weights
            self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            if conv_shortcut:
                self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            else:
                self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, Cin, H, W) -> (B, Cout, H, W)
        inplace = _no_grad()
        h = self.conv1(swish(self.norm1(x), inplace))
        if temb is not None:
            h = h + self.temb_proj(swish(temb))[:, :, None, None]
        h = self.conv2(self.dropout(swish(self.norm2(h), inplace)))
        if self.in_channels != self.out_channels:
            x = self.conv_shortcut(x) if self.use_conv_shortcut else self.nin_shortcut(x)
        return h.add_(x) if inplace and h.dtype == x.dtype else x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, with 1x1-conv projections.

    Uses scaled_dot_product_attention (fused, no (HW, HW) matrix kept for backward in the
    flash/efficient kernels); the scale 1/sqrt(C) is SDPA's default and the original's.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.norm = Normalize(in_channels)
        self.q = nn.Conv2d(in_channels, in_channels, 1)
        self.k = nn.Conv2d(in_channels, in_channels, 1)
        self.v = nn.Conv2d(in_channels, in_channels, 1)
        self.proj_out = nn.Conv2d(in_channels, in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.norm(x)

        def tokens(t: torch.Tensor) -> torch.Tensor:
            # (B, C, H, W) -> (B, 1, H*W, C); a free view when t is channels_last
            return t.flatten(2).transpose(1, 2).unsqueeze(1)

        out = F.scaled_dot_product_attention(tokens(self.q(h)), tokens(self.k(h)), tokens(self.v(h)))
        # (B, 1, H*W, C) -> (B, C, H, W)
        out = self.proj_out(out.squeeze(1).transpose(1, 2).reshape(b, c, hh, ww))
        return out.add_(x) if _no_grad() and out.dtype == x.dtype else x + out


class Downsample(nn.Module):
    """Halve H and W: stride-2 3x3 conv after padding right/bottom by one (the original's
    asymmetric padding, so 2k -> k exactly), or 2x2 average pooling without a conv."""

    def __init__(self, in_channels: int, with_conv: bool = True):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(in_channels, in_channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_conv:
            return self.conv(F.pad(x, (0, 1, 0, 1)))  # pad = (left, right, top, bottom)
        return F.avg_pool2d(x, kernel_size=2, stride=2)


# Nearest x2 upsampling followed by a 3x3 conv equals, for each of the 4 output phases (a, b), a 2x2
# conv on the small input: the 3 kernel rows fall on 2 input rows, rows (i-1, i) for a = 0 with taps
# (w0, w1 + w2), rows (i, i+1) for a = 1 with taps (w0 + w1, w2); columns likewise. That is 16 taps
# per input pixel instead of 36, and the 4x larger upsampled tensor is never built.
_PHASE_TAPS = torch.tensor([[1.0, 0, 0, 0, 1, 1], [1.0, 1, 0, 0, 0, 1]],
                           device="cpu").reshape(2, 2, 3)  # (phase, tap, k); cpu even under a meta default device


def phase_weights(w: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, 3, 3) -> (4 * Cout, Cin, 2, 2), phase-major: rows a*2*Cout + b*Cout + o."""
    o, i = w.shape[:2]
    taps = _PHASE_TAPS.to(w)
    m = torch.einsum("apk,bql->klpqab", taps, taps).reshape(9, 16)  # (kernel tap, (p, q, a, b))
    out = (w.reshape(o * i, 9) @ m).reshape(o, i, 2, 2, 2, 2)  # (o, i, p, q, a, b)
    return out.permute(4, 5, 0, 1, 2, 3).reshape(4 * o, i, 2, 2)


def upsample_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """conv3x3(nearest_upsample_x2(x), padding 1) in one 2x2 conv; x (B, Cin, H, W) -> (B, Cout, 2H, 2W)."""
    b, _, h, w = x.shape
    cout = weight.shape[0]
    y = F.conv2d(x, phase_weights(weight), None if bias is None else bias.repeat(4), padding=1)
    y = y.unflatten(1, (2, 2, cout))  # (B, 2, 2, Cout, H+1, W+1); phase (a, b) sits at offset (a, b)
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    out = torch.empty(b, cout, 2 * h, 2 * w, dtype=y.dtype, device=y.device,
                      memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for a in (0, 1):
        for c in (0, 1):
            out[:, :, a::2, c::2] = y[:, a, c, :, a:a + h, c:c + w]
    return out


class Upsample(nn.Module):
    """Double H and W by nearest-neighbour repetition, then an optional 3x3 conv.

    From `phase_min_pixels` input pixels on, the conv runs as the equivalent 2x2 phase conv
    (same numbers up to float summation order, ~1e-7 relative; 2.25x fewer FLOPs). Below it the
    weight transform costs more than it saves.
    """

    phase_min_pixels = 32 * 32  # class-wide switch: set to None to always upsample explicitly

    def __init__(self, in_channels: int, with_conv: bool = True):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_conv and self.phase_min_pixels is not None and x.shape[2] * x.shape[3] >= self.phase_min_pixels:
            return upsample_conv3x3(x, self.conv.weight, self.conv.bias)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x
