"""DeepLab v2 (ResNet-101, atrous rates 6/12/18/24, output stride 8) in the multi-scale wrapper MSC,
trained on COCO-Stuff 164k (182 labels): the network the original's extract_segmentation.py used.

Keys are those of the published `deeplabv2_resnet101_msc-cocostuff164k-100000.pth`: `base.layer1.conv1.{conv,bn}`
(stem), `base.layer{2..5}.block{N}.{reduce,conv3x3,increase,shortcut}.{conv,bn}` (MSRA bottlenecks: the
stride sits in the 1x1 `reduce`), `base.aspp.c{0..3}.{weight,bias}`.

MSC at evaluation: logits of the full input and of the input scaled by 0.5 and 0.75 (bilinear), the
scaled ones resized to the full one's logit size, then the element-wise maximum. The caller's side
(`prepare`, `labels`): RGB in [0, 255] flipped to BGR, minus the mean 104.008/116.669/122.675
(std 1); logits resized to the image size with bilinear align_corners=True (the original script's
`upsample_bilinear`), argmax.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

N_CLASSES = 182
BLOCKS = (3, 4, 23, 3)
ATROUS_RATES = (6, 12, 18, 24)
SCALES = (0.5, 0.75)
MEAN_BGR = (104.008, 116.669, 122.675)


class ConvBnReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int, relu: bool = True):
        super().__init__()
        self.add_module("conv", nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, bias=False))
        self.add_module("bn", nn.BatchNorm2d(c_out, eps=1e-5))
        if relu:
            self.add_module("relu", nn.ReLU())


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, dilation: int, downsample: bool):
        super().__init__()
        mid = c_out // 4
        self.reduce = ConvBnReLU(c_in, mid, 1, stride, 0, 1)
        self.conv3x3 = ConvBnReLU(mid, mid, 3, 1, dilation, dilation)
        self.increase = ConvBnReLU(mid, c_out, 1, 1, 0, 1, relu=False)
        self.shortcut = ConvBnReLU(c_in, c_out, 1, stride, 0, 1, relu=False) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.increase(self.conv3x3(self.reduce(x))) + self.shortcut(x))


def res_layer(blocks: int, c_in: int, c_out: int, stride: int, dilation: int) -> nn.Sequential:
    layer = nn.Sequential()
    for i in range(blocks):
        layer.add_module(f"block{i + 1}", Bottleneck(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1,
                                                     dilation, downsample=i == 0))
    return layer


class ASPP(nn.Module):
    """Sum of parallel 3x3 atrous convolutions (keys c0..c3)."""

    def __init__(self, c_in: int, c_out: int, rates=ATROUS_RATES):
        super().__init__()
        for i, rate in enumerate(rates):
            self.add_module(f"c{i}", nn.Conv2d(c_in, c_out, 3, 1, padding=rate, dilation=rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = iter(self.children())
        out = next(branches)(x)
        for branch in branches:
            out = out + branch(x)
        return out


class DeepLabV2(nn.Sequential):
    """(B, 3, H, W) -> (B, n_classes, ~H/8, ~W/8) logits."""

    def __init__(self, n_classes: int = N_CLASSES, blocks=BLOCKS):
        super().__init__()
        stem = nn.Sequential()
        stem.add_module("conv1", ConvBnReLU(3, 64, 7, 2, 3, 1))
        stem.add_module("pool", nn.MaxPool2d(3, 2, 1, ceil_mode=True))
        self.add_module("layer1", stem)
        self.add_module("layer2", res_layer(blocks[0], 64, 256, 1, 1))
        self.add_module("layer3", res_layer(blocks[1], 256, 512, 2, 1))
        self.add_module("layer4", res_layer(blocks[2], 512, 1024, 1, 2))
        self.add_module("layer5", res_layer(blocks[3], 1024, 2048, 1, 4))
        self.add_module("aspp", ASPP(2048, n_classes))


class MSC(nn.Module):
    """Multi-scale inputs; at evaluation the maximum of the logits over the scales."""

    def __init__(self, base: nn.Module, scales=SCALES):
        super().__init__()
        self.base = base
        self.scales = tuple(scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C, h, w) logits of the full input
        logits = self.base(x)
        out = logits
        for scale in self.scales:
            # scale_factor (not a size): the coordinate map uses 1/scale, as the reference's call does
            scaled = self.base(F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False))
            out = torch.maximum(out, F.interpolate(scaled, size=logits.shape[-2:], mode="bilinear", align_corners=False))
        return out


def deeplab_v2_msc(n_classes: int = N_CLASSES) -> MSC:
    return MSC(DeepLabV2(n_classes))


def prepare(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 RGB -> (B, 3, H, W) float32 BGR minus the mean."""
    x = images.float().flip(1)
    return x - x.new_tensor(MEAN_BGR).view(1, 3, 1, 1)


def labels(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) logits -> (B, H, W) uint8 label maps (bilinear, align_corners=True, then argmax),
    one image at a time: the image-size logits of one are C x H x W floats."""
    out = [F.interpolate(l[None].float(), size=size, mode="bilinear", align_corners=True).argmax(1)[0] for l in logits]
    return torch.stack(out).to(torch.uint8)


def key_problem(state_dict: dict) -> str | None:
    """Why a state dict is not a DeepLab v2 MSC COCO-Stuff file, or None (a fetched file's check: no
    checksum is published for it)."""
    own = deeplab_v2_msc().state_dict()
    wanted = {k: tuple(v.shape) for k, v in own.items() if not k.endswith("num_batches_tracked")}
    got = {k: tuple(v.shape) for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(set(wanted) - set(got)), sorted(set(got) - set(wanted))
    shapes = sorted(k for k in set(wanted) & set(got) if wanted[k] != got[k])
    if missing or unexpected or shapes:
        return (f"its keys are not DeepLab v2's: {len(missing)} missing (e.g. {missing[:2]}), "
                f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}), {len(shapes)} of another shape")
    return None
