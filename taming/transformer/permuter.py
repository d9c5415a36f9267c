"""Orders in which the transformer reads a (H, W) grid of codes.

A permuter maps raster-ordered tokens (B, H*W) to the order the transformer is trained in, and back
with `reverse=True`. The seven orders are the original's; their buffers keep the original names
(`forward_shuffle_idx`, `backward_shuffle_idx`) so original checkpoints that hold them load strictly.

Every order is built as a list of raster positions: `forward_shuffle_idx[k]` is the raster position
read at step k, and `backward_shuffle_idx` is its inverse permutation. Orders are computed on the CPU
explicitly so that a model built under `with torch.device("meta")` still gets real index buffers.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class AbstractPermuter(nn.Module):
    def forward(self, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:  # (B, H*W) -> (B, H*W)
        raise NotImplementedError


class Identity(AbstractPermuter):
    """Raster order; holds no buffers (the original's transformer checkpoints have no permuter keys)."""

    def forward(self, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        return x


class IndexPermuter(AbstractPermuter):
    """A fixed order given as raster positions; subclasses only say which positions, in which order."""

    def __init__(self, order: torch.Tensor) -> None:
        super().__init__()
        order = torch.as_tensor(order, dtype=torch.int64, device="cpu").flatten()
        if not torch.equal(order.sort().values, torch.arange(order.numel(), device="cpu")):
            raise ValueError(f"{type(self).__name__}: order is not a permutation of 0..{order.numel() - 1}")
        self.register_buffer("forward_shuffle_idx", order)
        self.register_buffer("backward_shuffle_idx", torch.argsort(order))

    def forward(self, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        idx = self.backward_shuffle_idx if reverse else self.forward_shuffle_idx
        return x[:, idx]


def _log2_exact(n: int, what: str) -> int:
    if n < 1 or n & (n - 1):
        raise ValueError(f"{what} must be a power of two, got {n}")
    return n.bit_length() - 1


def _grid(H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of every raster position, each (H*W,)."""
    rows, cols = torch.meshgrid(torch.arange(H, device="cpu"), torch.arange(W, device="cpu"), indexing="ij")
    return rows.flatten(), cols.flatten()


def _interleave(rows: torch.Tensor, cols: torch.Tensor, bits: int) -> torch.Tensor:
    """Morton code: bit b of the column goes to bit 2b, bit b of the row to bit 2b+1."""
    code = torch.zeros_like(rows)
    for b in range(bits):
        code |= ((cols >> b) & 1) << (2 * b)
        code |= ((rows >> b) & 1) << (2 * b + 1)
    return code


def _reverse_bits(v: torch.Tensor, bits: int) -> torch.Tensor:
    out = torch.zeros_like(v)
    for b in range(bits):
        out |= ((v >> b) & 1) << (bits - 1 - b)
    return out


class Subsample(IndexPermuter):
    """Coarse to fine: first every second code in both directions (a 2x-subsampled image), recursively.

    Equivalently a Z-curve over the bit-reversed coordinates: the lowest bits of (row, col) pick the
    sub-lattice and are read first. Needs a square grid whose side is a power of two (as the original).
    """

    def __init__(self, H: int, W: int) -> None:
        if H != W:
            raise ValueError(f"Subsample needs a square grid, got H={H}, W={W}")
        bits = _log2_exact(H, "Subsample grid side")
        rows, cols = _grid(H, W)
        key = _interleave(_reverse_bits(rows, bits), _reverse_bits(cols, bits), bits)
        super().__init__(torch.argsort(key))


class ZCurve(IndexPermuter):
    """Morton (Z) order: 2x2 blocks, then 2x2 blocks of blocks, ... (row bits above column bits)."""

    def __init__(self, H: int, W: int) -> None:
        rows, cols = _grid(H, W)
        bits = max(H - 1, W - 1, 1).bit_length()
        # The original stores the Morton codes themselves as the backward index; for the
        # power-of-two squares it is used with, those equal argsort(forward), which we store.
        super().__init__(torch.argsort(_interleave(rows, cols, bits)))


def _spiral_out_positions(size: int) -> list[tuple[int, int]]:
    """(row, col) visited by a spiral starting just left of the centre, going up first, clockwise.

    Runs have lengths 1, 1, 2, 2, ..., size-1, size-1 and a last run of size-1 down the right edge;
    directions cycle up, right, down, left.
    """
    moves = [(-1, 0), (0, 1), (1, 0), (0, -1)]  # up, right, down, left
    runs = [k for k in range(1, size) for _ in range(2)] + [size - 1]
    r, c = size // 2, size // 2 - 1
    path = [(r, c)]
    for n, length in enumerate(runs):
        dr, dc = moves[n % 4]
        for _ in range(length):
            r, c = r + dr, c + dc
            path.append((r, c))
    return path


def _spiral_out_order(H: int, W: int, name: str) -> torch.Tensor:
    if H != W or H % 2:
        raise ValueError(f"{name} needs a square grid with an even side, got H={H}, W={W}")
    return torch.tensor([r * W + c for r, c in _spiral_out_positions(H)], device="cpu")


class SpiralOut(IndexPermuter):
    """From the centre outwards, clockwise."""

    def __init__(self, H: int, W: int) -> None:
        super().__init__(_spiral_out_order(H, W, "SpiralOut"))


class SpiralIn(IndexPermuter):
    """SpiralOut read backwards: from the bottom-right corner inwards."""

    def __init__(self, H: int, W: int) -> None:
        super().__init__(_spiral_out_order(H, W, "SpiralIn").flip(0))


class Random(IndexPermuter):
    """A fixed random order: numpy's RandomState(1) permutation, the original's seed and generator."""

    def __init__(self, H: int, W: int) -> None:
        super().__init__(torch.from_numpy(np.random.RandomState(1).permutation(H * W)))


class AlternateParsing(IndexPermuter):
    """Boustrophedon: even rows left to right, odd rows right to left."""

    def __init__(self, H: int, W: int) -> None:
        grid = torch.arange(H * W, device="cpu").view(H, W)
        grid[1::2] = grid[1::2].flip(1)
        super().__init__(grid.flatten())


__all__ = ["AbstractPermuter", "Identity", "IndexPermuter", "Subsample", "ZCurve", "SpiralOut",
           "SpiralIn", "Random", "AlternateParsing"]
