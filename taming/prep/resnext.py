"""ResNeXt-101 32x8d in torchvision's layout and key names (MiDaS v2.1's encoder, the WSL weights).

A bottleneck block: 1x1 conv to `width` channels, 3x3 grouped conv (32 groups, the stride is here:
torchvision's "v1.5"), 1x1 conv to `out` channels, each with BatchNorm, added to the shortcut
(`downsample`: 1x1 conv + BatchNorm on the first block of a stage) and ReLU. Keys per block:
conv1, bn1, conv2, bn2, conv3, bn3, downsample.0, downsample.1. Widths for 32x8d: 256, 512, 1024,
2048 (= planes * 8 / 64 * 32), outputs the same (planes * 4).
"""
from __future__ import annotations

import torch
from torch import nn

STAGES = ((64, 3, 1), (128, 4, 2), (256, 23, 2), (512, 3, 2))  # (planes, blocks, stride) of ResNeXt-101
BLOCKS = tuple(b for _, b, _ in STAGES)
GROUPS, WIDTH_PER_GROUP, EXPANSION = 32, 8, 4


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, width: int, c_out: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, c_out, H/stride, W/stride)
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return self.relu(h + (x if self.downsample is None else self.downsample(x)))


def stem() -> list[nn.Module]:
    """conv1 (7x7, stride 2), bn1, relu, maxpool (3x3, stride 2): (B, 3, H, W) -> (B, 64, H/4, W/4)."""
    return [nn.Conv2d(3, 64, 7, 2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, padding=1)]


def stages(groups: int = GROUPS, width_per_group: int = WIDTH_PER_GROUP,
           blocks: tuple[int, ...] = BLOCKS) -> list[nn.Sequential]:
    """layer1..layer4: strides 4, 8, 16, 32 overall; channels 256, 512, 1024, 2048; `blocks` per stage."""
    out, c_in = [], 64
    for (planes, _, stride), n in zip(STAGES, blocks):
        width = planes * width_per_group // 64 * groups
        c_out = planes * EXPANSION
        out.append(nn.Sequential(*[Bottleneck(c_in if i == 0 else c_out, width, c_out, stride if i == 0 else 1, groups)
                                   for i in range(n)]))
        c_in = c_out
    return out
