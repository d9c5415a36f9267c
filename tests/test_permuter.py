"""Permuters: exact original orders on a 4x4 grid, permutation/inverse properties, buffer names."""
import numpy as np
import pytest
import torch

from taming.modules.transformer import permuter as compat
from taming.transformer.permuter import (AlternateParsing, Identity, Random, SpiralIn, SpiralOut, Subsample,
                                         ZCurve)

# Raster positions read at each step on a 4x4 grid (positions 0..15, row-major), as the original orders them.
EXPECTED_4x4 = {
    Subsample: [0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15],
    ZCurve: [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15],
    SpiralOut: [9, 5, 6, 10, 14, 13, 12, 8, 4, 0, 1, 2, 3, 7, 11, 15],
    SpiralIn: [15, 11, 7, 3, 2, 1, 0, 4, 8, 12, 13, 14, 10, 6, 5, 9],
    AlternateParsing: [0, 1, 2, 3, 7, 6, 5, 4, 8, 9, 10, 11, 15, 14, 13, 12],
    Random: [3, 13, 7, 2, 6, 10, 4, 1, 14, 0, 15, 9, 8, 12, 11, 5],  # np.random.RandomState(1).permutation(16)
}
ORDERED = list(EXPECTED_4x4)


@pytest.mark.parametrize("cls", ORDERED, ids=lambda c: c.__name__)
def test_known_order_4x4(cls):
    p = cls(4, 4)
    assert p.forward_shuffle_idx.tolist() == EXPECTED_4x4[cls]
    x = torch.arange(16).view(1, 16) * 10  # token value = 10 * raster position
    assert (p(x) // 10).tolist() == [EXPECTED_4x4[cls]]


@pytest.mark.parametrize("cls", ORDERED, ids=lambda c: c.__name__)
@pytest.mark.parametrize("size", [2, 8, 16])
def test_permutation_and_inverse(cls, size):
    p = cls(size, size)
    n = size * size
    assert sorted(p.forward_shuffle_idx.tolist()) == list(range(n))
    assert p.forward_shuffle_idx.dtype == torch.int64
    assert torch.equal(p.forward_shuffle_idx[p.backward_shuffle_idx], torch.arange(n))
    x = torch.randint(0, 1024, (3, n))
    assert torch.equal(p(p(x), reverse=True), x)
    assert torch.equal(p(p(x, reverse=True)), x)
    assert set(p.state_dict()) == {"forward_shuffle_idx", "backward_shuffle_idx"}


def test_zcurve_backward_is_morton_code():
    # The original stores Morton codes as backward index; for 2^k squares they equal our inverse.
    p = ZCurve(4, 4)
    assert p.backward_shuffle_idx.tolist() == [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]


def test_random_16x16_matches_numpy_seed_1():
    assert Random(16, 16).forward_shuffle_idx.tolist() == np.random.RandomState(1).permutation(256).tolist()


def test_non_square_orders():
    a = AlternateParsing(2, 3)
    assert a.forward_shuffle_idx.tolist() == [0, 1, 2, 5, 4, 3]
    z = ZCurve(2, 4)
    assert z.forward_shuffle_idx.tolist() == [0, 1, 4, 5, 2, 3, 6, 7]
    x = torch.randint(0, 9, (2, 8))
    assert torch.equal(z(z(x), reverse=True), x)


def test_identity():
    x = torch.randint(0, 9, (2, 5))
    assert Identity()(x) is x and Identity()(x, reverse=True) is x
    assert Identity().state_dict() == {}


@pytest.mark.parametrize("cls,H,W", [(Subsample, 4, 8), (Subsample, 6, 6), (SpiralOut, 3, 3), (SpiralIn, 4, 2)])
def test_unsupported_grid_raises(cls, H, W):
    with pytest.raises(ValueError, match=cls.__name__):
        cls(H, W)


def test_compat_exports():
    for name in ["AbstractPermuter", "Identity", "Subsample", "ZCurve", "SpiralOut", "SpiralIn", "Random",
                 "AlternateParsing"]:
        assert hasattr(compat, name)
    assert compat.SpiralOut is SpiralOut


def test_buffers_are_real_under_meta_device():
    with torch.device("meta"):
        p = SpiralOut(4, 4)
    assert p.forward_shuffle_idx.device.type == "cpu"
    assert p.forward_shuffle_idx.tolist() == EXPECTED_4x4[SpiralOut]
