"""VGG16 as torch-fidelity 0.4.0 uses it for precision/recall ("vgg16" feature extractor, layer "fc2_relu").

torch-fidelity builds torchvision's ImageNet VGG16 (configuration D of Simonyan & Zisserman), deletes the
classifier's tail after the second Linear (ReLU, Dropout, the 1000-way Linear) and feeds it:
- uint8-range pixels as float32, resized to 224x224 with the TensorFlow 1.x bilinear rule (resize.py);
- normalised with ImageNet's mean and std scaled to [0, 255]: (x - 255 * mean) / (255 * std);
- through the 13 conv layers (3x3, pad 1, each followed by ReLU; 2x2 max pools after blocks of 2, 2,
  3, 3, 3), torchvision's AdaptiveAvgPool2d((7, 7)) (the identity at 224 px), a flatten, then
  Linear(25088, 4096) -> ReLU -> Dropout (inert in eval) -> Linear(4096, 4096) = "fc2";
- "fc2_relu" = ReLU(fc2), the 4096-d features PRC uses by default.

The module has torchvision's state_dict keys (features.{0,2,5,...}.weight/bias, classifier.{0,3}.*), so
the standard `vgg16-397923af.pth` loads strictly with weights_only; its classifier.6.* (the dropped
1000-way layer) is allowed and skipped. torchvision itself is not imported (see README).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from taming.eval.resize import resize_bilinear_tf1
from taming.losses.lpips import vgg16_features

INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DROPPED_TAIL = ("classifier.6.",)  # the file's 1000-way Linear, which torch-fidelity deletes


class VGG16Features(nn.Module):
    """uint8-range images (B, 3, H, W) of any size -> {"fc2": (B, 4096), "fc2_relu": (B, 4096)}."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(*vgg16_features())  # the indices are torchvision's key names
        # classifier[2] is torchvision's Dropout, the identity in eval: Identity keeps the index of "3"
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Identity(), nn.Linear(4096, 4096))
        self.register_buffer("mean", torch.tensor([255 * m for m in IMAGENET_MEAN]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([255 * s for s in IMAGENET_STD]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W), got {tuple(images.shape)}")
        x = resize_bilinear_tf1(images.float(), (INPUT_SIZE, INPUT_SIZE))  # (B, 3, 224, 224)
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        x = self.features(x)  # (B, 512, 7, 7)
        x = F.adaptive_avg_pool2d(x, (7, 7))  # torchvision's avgpool; changes nothing at 224 px
        fc2 = self.classifier(x.flatten(1))  # (B, 25088) -> (B, 4096); flatten is in (C, H, W) order
        return {"fc2": fc2, "fc2_relu": F.relu(fc2)}


def load_vgg16(path=None, device: str | torch.device = "cpu") -> VGG16Features:
    """The PRC network with the standard weights (found as weights.find_weights(VGG16) says), eval, fp32."""
    from taming.checkpoint import load_weights, read_state_dict
    from taming.eval.weights import VGG16, find_weights

    file = find_weights(VGG16, path)
    net = VGG16Features()
    load_weights(net, read_state_dict(file), ignore_keys=DROPPED_TAIL, source=str(file))
    net.requires_grad_(False)
    # channels_last weights: oneDNN's fast convolution layout (same values, same state_dict keys)
    return net.eval().to(device, memory_format=torch.channels_last)
