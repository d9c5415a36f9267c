"""Preparing data as the original did: depth maps (MiDaS v2.1) and segmentation maps (DeepLab v2,
COCO-Stuff) for the depth- and segmentation-conditioned datasets, written in their encodings.

    midas.py     MidasNet (ResNeXt-101 32x8d WSL encoder, resnext.py) and its default transform
    deeplab.py   DeepLab v2 ResNet-101 in the multi-scale MSC wrapper, its input and label steps
    maps.py      the published weights loaded strictly; per kind: prepare, run a batch, finish, write
    inputs.py    what to extract: an image folder, a file list, or a dataset config split
    extract.py   the batched, resumable loop behind `taming extract-depth` / `extract-segmentation`
"""
