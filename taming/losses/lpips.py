"""LPIPS perceptual distance on VGG16 features (Zhang et al. 2018, v0.1 "lin" weights).

State-dict names are the original's: `scaling_layer.{shift,scale}`, `net.slice1..5.N.{weight,bias}`
(N = the layer's index in torchvision's `vgg16().features`), `lin0..4.model.1.weight`.

Where the weights come from (never downloaded; search order in `lpips_files.py`):
- `LPIPS(pretrained=True)` (the default) reads the two files on first use, i.e. the first forward
  or an explicit `load_pretrained()`, unless a state_dict holding its weights was loaded before
  (a VQGAN checkpoint carries them under `loss.perceptual_loss.*`). So building a model from a
  config never needs the files, and a checkpoint's weights are never overwritten by the files.
- `LPIPS(pretrained=False)` never reads files: its weights come from a state_dict or stay random.

LPIPS is a fixed metric: parameters are frozen and the module always stays in eval mode (the
original switched its lin-layer dropout on whenever the model trained, making the loss random).
"""
from __future__ import annotations

import os

import torch
from torch import nn

from taming.checkpoint import load_weights, read_state_dict
from taming.losses.lpips_files import find_lin_file, find_vgg16_file

# torchvision's vgg16().features split after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
VGG16_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
# VGG16 (configuration D of Simonyan & Zisserman): 3x3 conv widths, "M" a 2x2 max pool
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
LPIPS_CHANNELS = (64, 128, 256, 512, 512)


def vgg16_features() -> list[nn.Module]:
    """The 31 layers of torchvision's `vgg16().features`, each conv followed by a ReLU; their indices
    are torchvision's state_dict names (LPIPS uses the first 30)."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c_in = v
    return layers


class VGG16Slices(nn.Module):
    """VGG16 conv trunk returning the 5 relu feature maps LPIPS compares."""

    def __init__(self) -> None:
        super().__init__()
        layers = vgg16_features()
        for i, (lo, hi) in enumerate(VGG16_SLICES, start=1):
            # add_module with the global index keeps torchvision's numbering in the keys (slice2.5.weight).
            s = nn.Sequential()
            for idx in range(lo, hi):
                s.add_module(str(idx), layers[idx])
            self.add_module(f"slice{i}", s)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i in range(1, 6):
            x = getattr(self, f"slice{i}")(x)
            feats.append(x)
        return feats


class ScalingLayer(nn.Module):
    """Maps [-1, 1] images to the input statistics the LPIPS VGG was calibrated with."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class NetLinLayer(nn.Module):
    """1x1 conv weighting the channels of one feature difference; `model.1` is the original key."""

    def __init__(self, chn_in: int, chn_out: int = 1, use_dropout: bool = False) -> None:
        super().__init__()
        layers = [nn.Dropout()] if use_dropout else []
        layers.append(nn.Conv2d(chn_in, chn_out, 1, stride=1, padding=0, bias=False))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def normalize_tensor(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit length over channels; (B, C, H, W) -> (B, C, H, W)."""
    norm = torch.sqrt(torch.sum(x * x, dim=1, keepdim=True))
    return x / (norm + eps)


class LPIPS(nn.Module):
    def __init__(self, use_dropout: bool = True, pretrained: bool = True,
                 vgg_path: str | os.PathLike | None = None, lin_path: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.chns = LPIPS_CHANNELS
        self.net = VGG16Slices()
        for i, c in enumerate(self.chns):
            self.add_module(f"lin{i}", NetLinLayer(c, use_dropout=use_dropout))
        self.pretrained = pretrained
        self.vgg_path, self.lin_path = vgg_path, lin_path
        # True once real weights are in: read from the files or loaded from a state_dict.
        self.weights_loaded = False
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    @property
    def lins(self) -> list[NetLinLayer]:
        return [getattr(self, f"lin{i}") for i in range(len(self.chns))]

    def train(self, mode: bool = True) -> "LPIPS":
        # A metric, not a trainee: dropout and frozen weights stay as they are whatever the parent does.
        return super().train(False)

    def load_pretrained(self, vgg_path: str | os.PathLike | None = None,
                        lin_path: str | os.PathLike | None = None) -> "LPIPS":
        """Read torchvision's VGG16 file and the LPIPS v0.1 lin file; raises WeightsNotFound if missing."""
        vgg_file = find_vgg16_file(vgg_path or self.vgg_path)
        lin_file = find_lin_file(lin_path or self.lin_path)
        vgg_sd = vgg16_to_slices(read_state_dict(vgg_file))
        lin_sd = read_state_dict(lin_file)
        # Load each file into its part only, strictly, so a wrong file is reported key by key.
        load_weights(self.net, vgg_sd, source=f"{vgg_file} (torchvision VGG16)")
        load_weights(nn.ModuleDict({f"lin{i}": lin for i, lin in enumerate(self.lins)}), lin_sd,
                     source=f"{lin_file} (LPIPS lin layers)")
        self.weights_loaded = True
        return self

    def ensure_weights(self) -> None:
        """Make sure real weights are in before the first use (reads the files if needed)."""
        if self.pretrained and not self.weights_loaded:
            self.load_pretrained()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        # Children load after this hook; their keys must all be present in the same dict.
        if all(prefix + k in state_dict for k in self.state_dict()):
            self.weights_loaded = True

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) x2 in [-1, 1] -> distance (B, 1, 1, 1)."""
        self.ensure_weights()
        feats0 = self.net(self.scaling_layer(input))
        feats1 = self.net(self.scaling_layer(target))
        val = None
        for lin, f0, f1 in zip(self.lins, feats0, feats1):
            # Normalize in float32: under bf16 autocast the unit-norm and squared difference lose too much.
            d = (normalize_tensor(f0.float()) - normalize_tensor(f1.float())) ** 2
            res = lin(d.to(f0.dtype)).float().mean(dim=(2, 3), keepdim=True)
            val = res if val is None else val + res
        return val


def vgg16_to_slices(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision keys `features.N.*` -> `sliceK.N.*` of VGG16Slices; `classifier.*` is not used by LPIPS."""
    out = {}
    for key, value in sd.items():
        if key.startswith("classifier."):
            continue
        name = key
        if key.startswith("features."):
            idx = int(key.split(".")[1])
            for k, (lo, hi) in enumerate(VGG16_SLICES, start=1):
                if lo <= idx < hi:
                    name = f"slice{k}.{key[len('features.'):]}"
                    break
        out[name] = value
    return out
