"""Window crops of pre-tokenized code grids: train a GPT on windows of codes of large images.

The sliding window samples a large grid window by window, reading the conditioning codes of the whole
map cropped to each window. Training on the same crops of whole-image code grids (rather than on
codes of pixel crops, whose borders the encoder sees differently) matches what the sampler feeds.

    CodeCrops(folder, size=8)                  a random window per access (training)
    CodeCrops(folder, size=8, fixed=True)      one window per index, the same on every access (validation)

The folder is a `write_code_arrays` folder (z.npy (N, H, W), optional c.npy (N, H, W) on the same grid).
Items are those of CodeDataset, with z_indices and c_indices cropped to one shared (size, size) window.
"""
from __future__ import annotations

import os
import random

import numpy as np
from torch.utils.data import Dataset

from .codes import CodeDataset
from .errors import DataError


class CodeCrops(Dataset):
    def __init__(self, folder: str | os.PathLike, size: int, fixed: bool = False, seed: int = 0):
        self.codes = CodeDataset(folder)
        h, w = self.codes.z.shape[1:3]
        if not 1 <= size <= min(h, w):
            raise DataError(f"CodeCrops: size {size} must be in 1..{min(h, w)} (the code grids are {h}x{w})")
        if self.codes.c is not None and tuple(self.codes.c.shape[1:3]) != (h, w):
            raise DataError(f"CodeCrops: conditioning codes {tuple(self.codes.c.shape[1:])} are not on the "
                            f"{h}x{w} grid of the image codes")
        self.size, self.fixed, self.seed, self.grid = size, fixed, seed, (h, w)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: int) -> dict:
        (h, w), s = self.grid, self.size
        # Python's random: DataLoader workers are seeded differently (numpy's global state is not)
        rng = random.Random(self.seed * 1_000_003 + i) if self.fixed else random
        top, left = rng.randrange(h - s + 1), rng.randrange(w - s + 1)
        item = self.codes[i]
        for key in ("z_indices", "c_indices"):
            if key in item:
                item[key] = np.ascontiguousarray(item[key][top:top + s, left:left + s])
        return item
