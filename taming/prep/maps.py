"""The two map makers behind `taming extract-depth` / `extract-segmentation`: a network with its
published weights, what it does to one image before batching, what it does to a batch, and how one
result is written in the encoding the datasets read.

- depth (MiDaS v2.1): (H, W) float32 relative inverse depth, written as an RGBA PNG whose four bytes
  per pixel are the little-endian float32 (`taming.data.imageio.depth_to_rgba`; D-RIN, ImageNet depth).
- segmentation (DeepLab v2 COCO-Stuff): (H, W) uint8 labels 0..181, written as a mode-L PNG
  (S-FLCKR, `taming.data.sflckr.Examples`, n_labels 182; COCO-Stuff datasets shift them by one).

Weights load strictly (taming.checkpoint, weights_only): every key of the published file must be
the network's and the other way round; only BatchNorm's `num_batches_tracked` counters, which
evaluation never reads, may be absent. MiDaS's training checkpoints wrap the weights as
{"model": ..., "optimizer": ...}; that is unwrapped as its own loader did.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from taming.checkpoint import CheckpointError, load_weights, read_checkpoint
from taming.prep import deeplab, midas
from taming.weights import DEEPLAB, MIDAS, WeightFile, find


def load_published(net: nn.Module, path: str | os.PathLike) -> nn.Module:
    """`net` with the weights of `path` (strict, see the module docstring), in eval mode, frozen."""
    ckpt = read_checkpoint(path)
    sd = ckpt.get("model", ckpt) if "optimizer" in ckpt else ckpt.get("state_dict", ckpt)
    bad = [k for k, v in sd.items() if not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(f"{path}: entries are not tensors: {', '.join(map(str, bad[:5]))}")
    load_weights(net, sd, source=str(path), counters_optional=True)
    return net.eval().requires_grad_(False)


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every BatchNorm into the convolution just before it (in eval mode BN is a per-channel
    affine map): one pass over each activation instead of two. Both networks register a conv and
    its BN in that order wherever the forward applies them so (resnext.py, deeplab.py, the stems)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for parent in list(net.modules()):
        names = list(parent._modules)
        for conv_name, bn_name in zip(names, names[1:]):
            conv, bn = parent._modules[conv_name], parent._modules[bn_name]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                parent._modules[conv_name] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                parent._modules[bn_name] = nn.Identity()
    return net


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class MapMaker:
    """One kind of map: subclasses name its weight file (`spec`), its network and the functions of the
    network's module that prepare images and bring outputs back to the image size."""

    kind = "map"
    spec: WeightFile
    network: Callable[[], nn.Module]
    transform: Callable[[torch.Tensor], torch.Tensor]  # (B, 3, H, W) uint8 -> network inputs
    to_image_size: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]  # outputs -> (B, H, W) maps

    def __init__(self, net: nn.Module, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.device, self.dtype = torch.device(device), dtype
        self.net = fold_batchnorm(net.eval()).to(self.device).to(memory_format=torch.channels_last)

    @classmethod
    def build(cls) -> nn.Module:
        return cls.network()

    @classmethod
    def from_weights(cls, weights: str | os.PathLike | None = None, fetch: bool | None = None, **kw) -> "MapMaker":
        """The network with the published weights, found as taming.weights says (`--weights`,
        its environment variable, the cache folder; fetched only if asked)."""
        return cls(load_published(cls.build(), find(cls.spec, weights, fetch=fetch)), **kw)

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) uint8 on the device -> (3, h, w) network input; images batch by its shape."""
        return self.transform(image)[0]

    @torch.no_grad()
    def run(self, batch: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.dtype):
            return self.net(batch.contiguous(memory_format=torch.channels_last)).float()

    def finish(self, output: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """One image's network output -> the array written, at the image size (H, W)."""
        return self.to_image_size(output[None], size)[0].cpu().numpy()

    def write(self, array: np.ndarray, path: Path) -> None:
        from taming.generation.files import save_png

        save_png(array, path)

    def __call__(self, images: torch.Tensor) -> list[np.ndarray]:
        """(B, 3, H, W) uint8 RGB of one size -> B arrays as written (a convenience for one batch)."""
        images = images.to(self.device)
        batch = torch.stack([self.prepare(image[None]) for image in images])
        return [self.finish(out, tuple(images.shape[-2:])) for out in self.run(batch)]


class DepthMaker(MapMaker):
    kind, spec = "depth", MIDAS
    network = staticmethod(midas.MidasNet)
    transform, to_image_size = staticmethod(midas.prepare), staticmethod(midas.to_image_size)  # (H, W) float32

    def write(self, array: np.ndarray, path: Path) -> None:
        save_depth(array, path)


class SegmentationMaker(MapMaker):
    kind, spec = "segmentation", DEEPLAB
    network = staticmethod(deeplab.deeplab_v2_msc)
    transform, to_image_size = staticmethod(deeplab.prepare), staticmethod(deeplab.labels)  # (H, W) uint8


def save_depth(depth: np.ndarray, path: Path) -> None:
    """(H, W) float32 -> RGBA PNG of its little-endian bytes (what taming.data.imageio.read_depth reads)."""
    from taming.data.imageio import depth_to_rgba
    from taming.generation.files import save_png

    save_png(depth_to_rgba(depth), path)


MAKERS: dict[str, Any] = {"depth": DepthMaker, "segmentation": SegmentationMaker}
