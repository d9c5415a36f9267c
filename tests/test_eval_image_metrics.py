"""PSNR and SSIM against analytic values and independent numpy/scipy (and torchmetrics) computations."""
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from taming.eval.image_metrics import psnr, ssim


def _images(b=3, c=3, h=32, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(b, c, h, w, generator=g)).clamp(-1, 1)
    return x, y


def _ssim_scipy(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """Wang et al. 2004 as skimage computes it: Gaussian sigma 1.5 truncated at 3.5 sigma (11 taps),
    population covariances, the map cropped by 5 pixels per border, averaged over channels."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for ch in range(a.shape[0]):
        x, y = a[ch].astype(np.float64), b[ch].astype(np.float64)
        f = lambda t: gaussian_filter(t, sigma=1.5, truncate=3.5, mode="reflect")  # noqa: E731
        ux, uy = f(x), f(y)
        vx, vy, vxy = f(x * x) - ux * ux, f(y * y) - uy * uy, f(x * y) - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        vals.append(s[5:-5, 5:-5].mean())
    return float(np.mean(vals))


def test_psnr_identical_is_inf_and_constant_offset_is_analytic():
    x, _ = _images()
    assert torch.isinf(psnr(x, x)).all()
    # offset d everywhere: MSE = d^2, PSNR = 20 log10(range / d)
    d = 0.1
    p = psnr(x, x + d)
    assert p.shape == (3,)
    assert torch.allclose(p, torch.full((3,), 20 * math.log10(2.0 / d)), atol=1e-4)
    assert torch.allclose(psnr(x, x + d, data_range=1.0), torch.full((3,), 20 * math.log10(1.0 / d)), atol=1e-4)


def test_psnr_matches_numpy_per_image():
    x, y = _images()
    a, b = x.numpy().astype(np.float64), y.numpy().astype(np.float64)
    want = [10 * np.log10(4.0 / np.mean((a[i] - b[i]) ** 2)) for i in range(3)]
    assert np.allclose(psnr(x, y).numpy(), want, rtol=1e-6)


def test_ssim_identical_is_one_and_matches_scipy():
    x, y = _images()
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-6)
    got = ssim(x, y)
    want = [_ssim_scipy(x[i].numpy(), y[i].numpy(), 2.0) for i in range(3)]
    assert got.shape == (3,)
    assert np.allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    assert 0.1 < float(got.min()) < float(got.max()) < 0.95  # a real, non-degenerate comparison
    # scaling data and range together leaves SSIM unchanged (means, variances and C1, C2 all scale alike)
    assert torch.allclose(ssim(x / 2, y / 2, data_range=1.0), got, atol=1e-5)


def test_ssim_map_matches_torchmetrics_on_the_valid_region():
    # torchmetrics 1.9 averages its map over the whole image, borders included (computed on a reflect-padded
    # copy); skimage, and torchmetrics before 1.0, average over the region where the window fits. We follow
    # skimage, so compare torchmetrics' full map cropped by the window radius (5).
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    x, y = _images(b=2, c=3, h=40, w=40, seed=3)
    _, full = tm_ssim(y.double(), x.double(), data_range=2.0, reduction="none", return_full_image=True)
    want = full[..., 5:-5, 5:-5].flatten(1).mean(1)
    assert torch.allclose(ssim(x, y).double(), want, atol=1e-6)


def test_bad_shapes_are_clear_errors():
    x, y = _images()
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, y[:2])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x[..., :8, :8], y[..., :8, :8])
