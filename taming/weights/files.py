"""The weight files: names, published URLs, checksums, environment variables (see registry.py)."""
from __future__ import annotations

from pathlib import Path

from taming.weights.registry import WeightFile, hub_checkpoints


def _lpips_places() -> list[Path]:
    from taming.losses.lpips_files import lin_search_dirs

    return lin_search_dirs()


def _deeplab_keys(state_dict: dict) -> str | None:
    from taming.prep.deeplab import key_problem

    return key_problem(state_dict)


LPIPS = WeightFile(
    name="lpips", what="the LPIPS v0.1 lin-layer weights", files=("vgg.pth",),
    urls=("https://heibox.uni-heidelberg.de/f/607503859c864bc1b30b/?dl=1",  # the original code's download
          "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth"),
    env="TAMING_LPIPS", used_by="training with the perceptual loss (LPIPS), taming eval reconstruction",
    md5="d507d7349b931f0638a25a48a722f98a", other_places=_lpips_places)

VGG16 = WeightFile(
    name="vgg16", what="torchvision's ImageNet VGG16 weights", files=("vgg16-397923af.pth",),
    urls=("https://download.pytorch.org/models/vgg16-397923af.pth",), env="TAMING_VGG16",
    used_by="LPIPS (training, taming eval reconstruction), precision/recall in taming eval",
    flag="--vgg16-weights", sha256_prefix="397923af", other_places=hub_checkpoints)

INCEPTION = WeightFile(
    name="inception", what="the FID Inception weights",
    files=("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth"),
    urls=("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
          "pt_inception-2015-12-05-6726825d.pth",),
    env="TAMING_INCEPTION", used_by="FID, KID, IS in taming eval; rejection sampling in taming sample",
    flag="--inception-weights", sha256_prefix="6726825d", other_places=hub_checkpoints)

MIDAS = WeightFile(
    name="midas", what="the MiDaS v2.1 weights (MidasNet, ResNeXt-101 WSL)",
    files=("model-f6b98070.pt", "midas_v21-f6b98070.pt", "midas_v21_384.pt"),
    urls=("https://github.com/isl-org/MiDaS/releases/download/v2_1/model-f6b98070.pt",
          "https://github.com/AlexeyAB/MiDaS/releases/download/midas_dpt/midas_v21-f6b98070.pt"),
    env="TAMING_MIDAS", used_by="taming extract-depth", flag="--weights", sha256_prefix="f6b98070",
    other_places=hub_checkpoints)

DEEPLAB = WeightFile(
    name="deeplab", what="the DeepLab v2 ResNet-101 COCO-Stuff 164k weights",
    files=("deeplabv2_resnet101_msc-cocostuff164k-100000.pth",),
    urls=("https://github.com/kazuto1011/deeplab-pytorch/releases/download/v1.0/"
          "deeplabv2_resnet101_msc-cocostuff164k-100000.pth",),
    env="TAMING_DEEPLAB", used_by="taming extract-segmentation", flag="--weights", keys_check=_deeplab_keys,
    other_places=hub_checkpoints)

REGISTRY = {spec.name: spec for spec in (LPIPS, VGG16, INCEPTION, MIDAS, DEEPLAB)}
