"""FID, KID, IS and precision/recall maths against independent numpy/scipy computations."""
import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats
import torch

from taming.eval import fidelity
from taming.eval.resize import resize_bilinear_tf1


def _features(n, d, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * (1 + shift) + shift


def test_frechet_distance_matches_scipy_sqrtm():
    a, b = _features(300, 16), _features(200, 16, shift=0.5, seed=1)
    mu1, s1 = fidelity.feature_statistics(a)
    mu2, s2 = fidelity.feature_statistics(b)
    assert np.allclose(s1, np.cov(a.double().numpy().T)) and np.allclose(mu1, a.double().numpy().mean(0))
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    want = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    got = fidelity.frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(want, rel=1e-9) and got > 1
    assert fidelity.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_rank_deficient_covariances_matches_scipy():
    # fewer samples than dimensions, as with 120 images and 2048 features: singular covariances
    a, b = _features(20, 48), _features(25, 48, shift=0.3, seed=2)
    mu1, s1 = fidelity.feature_statistics(a)
    mu2, s2 = fidelity.feature_statistics(b)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    want = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert fidelity.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-6)


def test_frechet_distance_of_gaussians_is_analytic():
    # diagonal covariances: FID = |mu1 - mu2|^2 + sum (sqrt(v1) - sqrt(v2))^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    want = 1 + 0 + 4 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    assert fidelity.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(want, rel=1e-12)


def _mmd2_loops(x, y):
    """The unbiased estimator written out over index pairs."""
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_a_loop_over_pairs_and_draws_subsets_like_torch_fidelity():
    a, b = _features(40, 8), _features(30, 8, shift=0.4, seed=3)
    got = fidelity.kernel_inception_distance(a, b, subsets=3, subset_size=12)
    rng = np.random.RandomState(2020)
    want = []
    for _ in range(3):
        x = a.double().numpy()[rng.choice(40, 12, replace=False)]
        y = b.double().numpy()[rng.choice(30, 12, replace=False)]
        want.append(_mmd2_loops(x, y))
    assert got[fidelity.KID_MEAN] == pytest.approx(np.mean(want), rel=1e-9)
    assert got[fidelity.KID_STD] == pytest.approx(np.std(want), rel=1e-9)
    assert got["kid_subset_size"] == 12


def test_kid_subset_is_clipped_to_the_smaller_input():
    a, b = _features(15, 8), _features(10, 8, seed=4)
    got = fidelity.kernel_inception_distance(a, b, subsets=2, subset_size=1000)
    assert got["kid_subset_size"] == 10


def test_inception_score_matches_scipy_entropy():
    logits = _features(50, 7) * 3
    got = fidelity.inception_score(logits, splits=5)
    perm = np.random.RandomState(2020).permutation(50)
    p = scipy.special.softmax(logits.double().numpy()[perm], axis=1)
    scores = []
    for i in range(5):
        chunk = p[i * 10:(i + 1) * 10]
        q = chunk.mean(0)
        scores.append(np.exp(np.mean([scipy.stats.entropy(row, q) for row in chunk])))
    assert got[fidelity.ISC_MEAN] == pytest.approx(np.mean(scores), rel=1e-10)
    assert got[fidelity.ISC_STD] == pytest.approx(np.std(scores), rel=1e-8)
    # one-hot, evenly spread predictions: the score is the number of classes; identical ones: 1
    assert fidelity.inception_score(torch.eye(7).repeat(2, 1) * 50, splits=1)[fidelity.ISC_MEAN] == pytest.approx(7, rel=1e-6)
    assert fidelity.inception_score(torch.ones(8, 7), splits=2)[fidelity.ISC_MEAN] == pytest.approx(1.0)


def test_precision_recall_match_brute_force():
    real, fake = _features(30, 5), _features(25, 5, shift=0.8, seed=5)
    got = fidelity.precision_recall(real, fake, k=3, batch=7)  # small batches exercise the chunking

    def radii(f):
        d = np.linalg.norm(f[:, None] - f[None], axis=2)
        return np.sort(d, axis=1)[:, 3]  # index 0 is the point itself

    r, f = real.numpy().astype(np.float64), fake.numpy().astype(np.float64)
    prec = np.mean([(np.linalg.norm(r - q, axis=1) <= radii(r)).any() for q in f])
    rec = np.mean([(np.linalg.norm(f - q, axis=1) <= radii(f)).any() for q in r])
    assert got[fidelity.PRECISION] == pytest.approx(prec) and got[fidelity.RECALL] == pytest.approx(rec)
    assert 0 < prec < 1 and 0 < rec < 1
    assert got[fidelity.F_SCORE] == pytest.approx(2 * prec * rec / (prec + rec))
    same = fidelity.precision_recall(real, real)
    assert same[fidelity.PRECISION] == same[fidelity.RECALL] == 1.0


def _scipy_prc(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float, float]:
    """Kynkaanniemi et al.: a sample is inside a set when within some member's distance to its k-th
    nearest other member (the k-th smallest distance after the member's own zero)."""
    import scipy.spatial.distance as dist

    def inside(queries, members):
        radii = np.sort(dist.cdist(members, members), axis=1)[:, k]
        return float((dist.cdist(queries, members) <= radii[None]).any(1).mean())

    p, r = inside(fake, real), inside(real, fake)
    return p, r, 2 * p * r / max(1e-5, p + r)  # torch-fidelity's f_score


def test_precision_recall_match_scipy_with_ties_duplicates_and_boundaries():
    # integer coordinates: every distance is exact in float32 too, so "<=" at a boundary is decided exactly
    rng = np.random.default_rng(3)
    real = rng.integers(-3, 4, (40, 3)).astype(np.float64)  # tied distances everywhere
    fake = rng.integers(0, 6, (33, 3)).astype(np.float64)
    real, fake = np.concatenate([real, real[:6]]), np.concatenate([fake, fake[:4]])  # exact duplicates
    radii = np.sort(np.linalg.norm(real[:, None] - real[None], axis=2), axis=1)[:, 3]
    d = np.linalg.norm(fake[:, None] - real[None], axis=2)
    assert ((d <= radii).any(1) & ~(d < radii).any(1)).sum() == 3  # fakes that only a boundary "<=" admits
    for batch in (1, 7, 1000):  # the row chunking does not change anything
        got = fidelity.precision_recall(torch.from_numpy(real).float(), torch.from_numpy(fake).float(), k=3, batch=batch)
        want = _scipy_prc(real, fake)
        assert (got[fidelity.PRECISION], got[fidelity.RECALL]) == (want[0], want[1])
        assert got[fidelity.F_SCORE] == pytest.approx(want[2], rel=1e-12)
    assert 0 < want[0] < 1 and 0 < want[1] < 1


def test_precision_recall_known_values_on_a_line():
    # real at x = 0..4: the 3rd-neighbour radius is 3 at both ends and 2 in the middle
    real = torch.tensor([[float(x), 0.0] for x in range(5)])
    fake = torch.tensor([[-3.0, 0.0], [7.0, 0.0], [8.0, 0.0], [2.0, 2.0], [2.0, 2.5], [100.0, 0.0]])
    got = fidelity.precision_recall(real, fake)
    # inside: (-3, 0) and (7, 0) exactly on the end balls, (2, 2) on the middle ball; not (8, 0), (2, 2.5), (100, 0)
    assert got[fidelity.PRECISION] == 0.5
    assert got[fidelity.RECALL] == pytest.approx(_scipy_prc(real.numpy(), fake.numpy())[1])
    far = fidelity.precision_recall(real, real + 1000)
    assert far[fidelity.PRECISION] == far[fidelity.RECALL] == far[fidelity.F_SCORE] == 0.0  # no 0/0
    with pytest.raises(Exception, match="more than 3 images"):
        fidelity.precision_recall(real[:3], fake)


def test_tf1_resize_matches_its_definition():
    # TF 1.x, align_corners=False: output d samples input at d * in / out, no half-pixel offset
    x = torch.arange(4 * 5, dtype=torch.float32).reshape(1, 1, 4, 5) ** 1.5
    out = resize_bilinear_tf1(x, (7, 3))
    a = x[0, 0].double().numpy()
    want = np.zeros((7, 3))
    for i in range(7):
        for j in range(3):
            sy, sx = i * 4 / 7, j * 5 / 3
            y0, x0 = int(sy), int(sx)
            y1, x1 = min(y0 + 1, 3), min(x0 + 1, 4)
            fy, fx = sy - y0, sx - x0
            top = a[y0, x0] * (1 - fx) + a[y0, x1] * fx
            bottom = a[y1, x0] * (1 - fx) + a[y1, x1] * fx
            want[i, j] = top * (1 - fy) + bottom * fy
    assert np.allclose(out[0, 0].numpy(), want, rtol=1e-5)
    assert torch.equal(resize_bilinear_tf1(x, (4, 5)), x)  # same size: identity


@pytest.mark.parametrize("n1,n2,d", [(20, 25, 48), (60, 70, 12)])
def test_fid_of_features_equals_fid_of_statistics(n1, n2, d):
    # fewer samples than dimensions: the low-rank route; more: the statistics route
    a, b = _features(n1, d), _features(n2, d, shift=0.3, seed=6)
    mu1, s1 = fidelity.feature_statistics(a)
    mu2, s2 = fidelity.feature_statistics(b)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    want = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert fidelity.frechet_distance_of_features(a, b) == pytest.approx(want, rel=1e-6)
    assert fidelity.frechet_distance_of_features(b, a) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("n,d", [(40, 64), (300, 16), (3000, 32)])
def test_a_set_against_itself_is_zero_not_rounding(n, d):
    """Issue 20: FID of a set against itself printed -5.05e-29, KID -3.46e-16; both are 0 by definition,
    whichever route (low-rank, statistics) and whatever the order of the rows."""
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, d, generator=g).abs() * 3  # pool features are non-negative
    shuffled = x[torch.randperm(n, generator=g)]
    assert fidelity.frechet_distance_of_features(x, x) == 0.0
    assert fidelity.frechet_distance_of_features(x, shuffled) == 0.0
    stats = fidelity.feature_statistics(x)
    assert fidelity.frechet_distance(*stats, *stats) == 0.0
    kid = fidelity.kernel_inception_distance(x, shuffled, subsets=5, subset_size=min(n, 50))
    assert kid[fidelity.KID_MEAN] == 0.0 and kid[fidelity.KID_STD] == 0.0
    # two different sets keep the estimator's value, negative or not (torch-fidelity's parity)
    y = torch.randn(n, d, generator=g).abs() * 3
    assert fidelity.frechet_distance_of_features(x, y) > 0
    other = fidelity.kernel_inception_distance(x, y, subsets=5, subset_size=min(n, 50))
    assert other[fidelity.KID_MEAN] != 0.0


def test_fid_rounding_below_zero_reads_zero():
    """Statistics equal up to the last bit but not bit-identical: the trace difference may round below 0."""
    x = torch.randn(500, 8, generator=torch.Generator().manual_seed(1)).double()
    mu, sigma = fidelity.feature_statistics(x)
    values = [fidelity.frechet_distance(mu, sigma, mu * (1 + eps), sigma) for eps in (1e-16, 2e-16, -1e-16, 3e-16)]
    assert all(v >= 0.0 for v in values), values
