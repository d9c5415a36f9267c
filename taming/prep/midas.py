"""MiDaS v2.1 (`MidasNet`): monocular depth from a ResNeXt-101 32x8d WSL encoder and a RefineNet-style
decoder, with its default input transform; the network the original's extract_depth.py used.

Keys are those of the published file (`model-f6b98070.pt`, served today as `midas_v21_384.pt`):
`pretrained.layer1.{0,1}` (stem conv, bn), `pretrained.layer1.4.*` (stage 1), `pretrained.layer{2,3,4}.*`
(stages 2-4, torchvision names), `scratch.layer{1..4}_rn.weight`, `scratch.refinenet{1..4}.resConfUnit{1,2}.conv{1,2}.*`,
`scratch.output_conv.{0,2,4}.*`.

The transform (`prepare`): values / 255, bicubic resize so that the longer side is 384 and both sides
are multiples of 32 (`net_size`: MiDaS's "upper_bound" rule), ImageNet mean and std. OpenCV's
INTER_CUBIC on float images and torch's bicubic (align_corners=False) are the same interpolation
(A = -0.75, half-pixel centres, edge pixels repeated): tests/test_prep_parity.py holds this against
fixtures made with OpenCV. The prediction (relative inverse depth, larger = nearer) is resized back
to the image size with bicubic interpolation, as the original script did.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from taming.prep import resnext

FEATURES = 256
NET_SIDE, MULTIPLE = 384, 32
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # MiDaS applies its first ReLU in place, so the skip connection adds the *rectified* input.
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FeatureFusionBlock(nn.Module):
    """(coarser path, skip from the encoder) -> fused, at twice the resolution."""

    def __init__(self, features: int):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class MidasNet(nn.Module):
    """`blocks` (per encoder stage, default ResNeXt-101's 3, 4, 23, 3) and `features` only change for tests."""

    def __init__(self, features: int = FEATURES, blocks: tuple[int, ...] = resnext.BLOCKS):
        super().__init__()
        stages = resnext.stages(blocks=blocks)
        self.pretrained = nn.Module()
        self.pretrained.layer1 = nn.Sequential(*resnext.stem(), stages[0])
        self.pretrained.layer2, self.pretrained.layer3, self.pretrained.layer4 = stages[1:]
        self.scratch = nn.Module()
        for i, c in enumerate((256, 512, 1024, 2048), 1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        for i in (4, 3, 2, 1):  # the published file's order
            setattr(self.scratch, f"refinenet{i}", FeatureFusionBlock(features))
        self.scratch.output_conv = nn.Sequential(
            nn.Conv2d(features, 128, 3, padding=1), nn.Upsample(scale_factor=2, mode="bilinear"),
            nn.Conv2d(128, 32, 3, padding=1), nn.ReLU(True), nn.Conv2d(32, 1, 1), nn.ReLU(True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W), H and W multiples of 32 -> (B, H, W)
        p, s = self.pretrained, self.scratch
        l1 = p.layer1(x)  # (B, 256, H/4, W/4)
        l2 = p.layer2(l1)  # (B, 512, H/8, W/8)
        l3 = p.layer3(l2)  # (B, 1024, H/16, W/16)
        l4 = p.layer4(l3)  # (B, 2048, H/32, W/32)
        path = s.refinenet4(s.layer4_rn(l4))  # (B, 256, H/16, W/16)
        path = s.refinenet3(path, s.layer3_rn(l3))
        path = s.refinenet2(path, s.layer2_rn(l2))
        path = s.refinenet1(path, s.layer1_rn(l1))  # (B, 256, H/2, W/2)
        return s.output_conv(path).squeeze(1)


def _multiple(x: float, limit: int) -> int:
    y = round(x / MULTIPLE) * MULTIPLE  # half to even, as numpy's round in MiDaS
    if y > limit:
        y = int(x // MULTIPLE) * MULTIPLE
    return max(int(y), MULTIPLE)  # MiDaS would give 0 for a side under 16 px; one block is the least that runs


def net_size(height: int, width: int, side: int | None = None) -> tuple[int, int]:
    """(h, w) the network sees: the longer side `side` (default NET_SIDE), both multiples of 32, aspect kept."""
    side = side or NET_SIDE
    scale = min(side / height, side / width)
    return _multiple(scale * height, side), _multiple(scale * width, side)


def prepare(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 RGB -> (B, 3, h, w) float32, normalized, at `net_size(H, W)`."""
    x = images.float() / 255.0
    x = F.interpolate(x, size=net_size(*x.shape[-2:]), mode="bicubic", align_corners=False)
    mean = x.new_tensor(MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def to_image_size(prediction: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) network output -> (B, H, W) float32, bicubic (align_corners=False) as the original."""
    return F.interpolate(prediction.float().unsqueeze(1), size=size, mode="bicubic", align_corners=False).squeeze(1)
