"""Sample-quality metrics on network features, as torch-fidelity 0.4.0 defines them (FID, KID and IS on
the FID Inception network's, precision/recall by default on VGG16's fc2_relu: see samples.py).

- FID (Heusel et al. 2017): |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2), with the trace of the
  matrix square root taken as the sum of square roots of the eigenvalues of S1 S2 (torch-fidelity's
  scipy-free form: S1 S2 is similar to a PSD matrix, so its eigenvalues are real and >= 0 up to rounding).
  Statistics: mean and unbiased covariance (N - 1) of the 2048-d pool features, float64. A distance is
  never negative: rounding below zero reads 0, and a set against itself (or its own statistics) is 0.
  With the features at hand and fewer samples than dimensions (S = A^T A / (N - 1), A the centred
  features, rank < D), the same trace is the nuclear norm of A1 A2^T / sqrt((N1 - 1)(N2 - 1)): the
  nonzero eigenvalues of S1 S2 are the squared singular values of that N1 x N2 matrix. It is exact,
  and avoids a 2048 x 2048 eigendecomposition (tens of seconds on a CPU) for small sample sets.
- KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel (x.y / d + 1)^3, averaged over
  `subsets` random subsets of `subset_size` drawn without replacement (numpy RandomState(2020): first the
  first input's subset, then the second's, per subset). torch-fidelity refuses a subset larger than an
  input; here it is clipped to the smaller input and the value used is reported. The estimator may be
  negative for two different sets (torch-fidelity reports those as they are); a set against itself
  (the same feature rows, in any order) is 0 by definition.
- Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) on softmax(logits_unbiased) over
  `splits` consecutive chunks after a RandomState(2020) permutation; mean and (population) std.
- Precision / recall (Kynkaenniemi et al. 2019): a sample is inside a set's manifold when it lies within
  the distance to some member's k-th nearest neighbour (k = 3, torch-fidelity's prc_neighborhood: the
  (k+1)-th smallest distance from the member, its own zero included, so duplicates count as neighbours),
  "within" including the boundary (<=); precision is the share of fakes inside the real manifold, recall
  the share of reals inside the fake one; f_score = 2PR / max(P + R, 1e-5). Euclidean distances come from
  torch.cdist on float32 features, as in torch-fidelity.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from taming.data.errors import DataError

FID = "frechet_inception_distance"
KID_MEAN, KID_STD = "kernel_inception_distance_mean", "kernel_inception_distance_std"
ISC_MEAN, ISC_STD = "inception_score_mean", "inception_score_std"
PRECISION, RECALL, F_SCORE = "precision", "recall", "f_score"
RNG_SEED = 2020  # torch-fidelity's rng_seed default, for KID subsets and the IS shuffle


def feature_statistics(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), sigma (D, D)) in float64 of features (N, D); the pytorch-fid .npz contents."""
    f = features.detach().cpu().double().numpy()
    if f.ndim != 2 or len(f) < 2:
        raise DataError(f"FID statistics need at least 2 feature vectors (N, D), got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise DataError(f"FID statistics do not match: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {s1.shape} vs {s2.shape}")
    if np.array_equal(mu1, mu2) and np.array_equal(s1, s2):
        return 0.0  # the same statistics: 0 by definition, not a rounding error of either sign
    eig = torch.linalg.eigvals(torch.from_numpy(s1 @ s2))  # complex128 (D,)
    tr_sqrt = float(eig.sqrt().real.sum())
    diff = mu1 - mu2
    return max(0.0, float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt))


def same_set(features1: torch.Tensor, features2: torch.Tensor) -> bool:
    """Whether two feature sets (N, D) hold the same rows, in any order (a folder against itself)."""
    if features1.shape != features2.shape:
        return False
    if torch.equal(features1, features2):
        return True
    a, b = (f.detach().cpu().double().numpy() for f in (features1, features2))
    return bool(np.array_equal(a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])]))


def frechet_distance_of_features(features1: torch.Tensor, features2: torch.Tensor) -> float:
    """FID of two feature sets (N1, D), (N2, D); the low-rank route when either N <= D (see above)."""
    f1, f2 = features1.detach().cpu().double(), features2.detach().cpu().double()
    n1, n2, d = len(f1), len(f2), f1.shape[1]
    if min(n1, n2) >= 2 and same_set(f1, f2):
        return 0.0
    if min(n1, n2) > d:
        return frechet_distance(*feature_statistics(f1), *feature_statistics(f2))
    if min(n1, n2) < 2 or f2.shape[1] != d:
        raise DataError(f"FID needs two sets of at least 2 feature vectors of one width, got {tuple(f1.shape)} "
                        f"and {tuple(f2.shape)}")
    a1, a2 = f1 - f1.mean(0), f2 - f2.mean(0)  # centred (N1, D), (N2, D)
    tr_sqrt = torch.linalg.svdvals(a1 @ a2.T).sum() / math.sqrt((n1 - 1) * (n2 - 1))
    diff = f1.mean(0) - f2.mean(0)
    return max(0.0, float(diff @ diff + (a1 * a1).sum() / (n1 - 1) + (a2 * a2).sum() / (n2 - 1) - 2 * tr_sqrt))


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-size sets (m, d) under k(a, b) = (a.b / d + 1)^3."""
    m, d = x.shape

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a @ b.T / d + 1) ** 3

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / (m * m))


def kernel_inception_distance(features1: torch.Tensor, features2: torch.Tensor, subsets: int = 100,
                              subset_size: int = 1000, seed: int = RNG_SEED) -> dict[str, float]:
    """{KID_MEAN, KID_STD, "kid_subset_size"} over random subsets (see the module docstring)."""
    f1, f2 = (f.detach().cpu().double().numpy() for f in (features1, features2))
    size = min(subset_size, len(f1), len(f2))
    if size < 2:
        raise DataError(f"KID needs at least 2 samples per input, got {len(f1)} and {len(f2)}")
    if same_set(features1, features2):
        return {KID_MEAN: 0.0, KID_STD: 0.0, "kid_subset_size": size}
    rng = np.random.RandomState(seed)
    mmds = []
    for _ in range(subsets):
        a = f1[rng.choice(len(f1), size, replace=False)]
        b = f2[rng.choice(len(f2), size, replace=False)]
        mmds.append(_polynomial_mmd2(a, b))
    return {KID_MEAN: float(np.mean(mmds)), KID_STD: float(np.std(mmds)), "kid_subset_size": size}


def inception_score(logits: torch.Tensor, splits: int = 10, seed: int | None = RNG_SEED) -> dict[str, float]:
    """{ISC_MEAN, ISC_STD} of logits (N, classes); seed None keeps the given order."""
    n = logits.shape[0]
    if n < splits:
        raise DataError(f"Inception Score with {splits} splits needs at least {splits} images, got {n}")
    if seed is not None:
        logits = logits[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    logits = logits.detach().cpu().double()
    log_p = logits.log_softmax(1)  # (N, C)
    scores = []
    for i in range(splits):
        chunk = log_p[i * n // splits:(i + 1) * n // splits]
        log_q = chunk.exp().mean(0, keepdim=True).log()  # log of the marginal p(y) over the chunk
        kl = (chunk.exp() * (chunk - log_q)).sum(1)
        scores.append(float(kl.mean().exp()))
    return {ISC_MEAN: float(np.mean(scores)), ISC_STD: float(np.std(scores))}


def _kth_neighbour_radius(f: torch.Tensor, k: int, batch: int) -> torch.Tensor:
    """(N,) distance from each row of f to its k-th nearest other row."""
    return torch.cat([torch.cdist(part, f).kthvalue(k + 1, dim=1).values for part in f.split(batch)])


def _inside(queries: torch.Tensor, members: torch.Tensor, radii: torch.Tensor, batch: int) -> float:
    """Share of queries within radii[j] of some member j."""
    hits = [(torch.cdist(part, members) <= radii).any(1) for part in queries.split(batch)]
    return float(torch.cat(hits).double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3, batch: int = 1000) -> dict[str, float]:
    """{PRECISION, RECALL, F_SCORE} of fake features against real features, both (N, D). Distances are
    taken `batch` rows at a time (the result does not depend on it; 1000 rows x 50k images = 200 MB)."""
    if min(len(real), len(fake)) <= k:
        raise DataError(f"precision/recall with k={k} needs more than {k} images per input, "
                         f"got {len(real)} real and {len(fake)} fake")
    real, fake = real.detach().cpu().float(), fake.detach().cpu().float()
    precision = _inside(fake, real, _kth_neighbour_radius(real, k, batch), batch)
    recall = _inside(real, fake, _kth_neighbour_radius(fake, k, batch), batch)
    return {PRECISION: precision, RECALL: recall, F_SCORE: 2 * precision * recall / max(1e-5, precision + recall)}
