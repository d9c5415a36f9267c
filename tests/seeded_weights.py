"""Weights made from a key's name and shape alone, bit for bit the same on every machine, so that the
extraction networks' parity fixtures (tests/fixtures/prep) need no stored weights: the fixture script
ran the reference code with exactly these numbers, and the tests rebuild them.

The rule (tests/fixtures/prep/README.md repeats it): seed = the first 8 bytes of SHA-256(key), read
little-endian; element i (row-major) gets u_i = (splitmix64(seed + (i + 1) * 0x9E3779B97F4A7C15) >> 40) / 2**24,
a uniform number in [0, 1) with 24 bits, exact in float32; value = u_i * float32(hi - lo) + float32(lo)
in float32 arithmetic (each product and sum rounded to nearest). [lo, hi) by key:
  *.num_batches_tracked           0 (int64 scalar)
  *.running_var                   [0.5, 1.5)
  *.running_mean, *.bias          [-0.1, 0.1)
  other 1-D *.weight (BatchNorm)  [0.5, 1.0)
  *output_conv.4.weight (MiDaS)   [0, a)   (its ReLU would otherwise give zeros everywhere)
  other (convolutions)            [-a, a), a = sqrt(3 / fan_in), fan_in = product of shape[1:]
Only integer arithmetic and IEEE-exact float operations: no library's random stream is involved.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
# MiDaS's last 1x1 conv feeds a ReLU: with signs at random its output was 0 everywhere (nothing to compare)
NON_NEGATIVE = ("output_conv.4.weight",)
CHUNK = 1 << 18
_COUNT = np.arange(CHUNK, dtype=np.uint64)


def uniform(key: str, n: int) -> np.ndarray:
    """n numbers in [0, 1) for `key`: float32 holding 24-bit values (exact)."""
    seed = np.uint64(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
    out = np.empty(n, dtype=np.float32)
    # in place, in chunks: fresh memory for whole-model temporaries (~100M numbers) costs more than the maths
    z, t = np.empty(CHUNK, dtype=np.uint64), np.empty(CHUNK, dtype=np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as intended
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            zc, tc = z[:m], t[:m]
            zc[:] = _COUNT[:m]
            zc += np.uint64(start + 1)
            zc *= GOLDEN
            zc += seed
            for shift, mix in ((30, MIX1), (27, MIX2), (31, None)):
                np.right_shift(zc, np.uint64(shift), out=tc)
                zc ^= tc
                if mix is not None:
                    zc *= mix
            zc >>= np.uint64(40)
            out[start:start + m] = zc
    out *= np.float32(1.0 / (1 << 24))
    return out


def bounds(key: str, shape: tuple[int, ...]) -> tuple[float, float]:
    if key.endswith("running_var"):
        return 0.5, 1.5
    if key.endswith(("running_mean", "bias")):
        return -0.1, 0.1
    if len(shape) == 1:
        return 0.5, 1.0
    a = math.sqrt(3.0 / math.prod(shape[1:]))
    return (0.0, a) if key.endswith(NON_NEGATIVE) else (-a, a)


def seeded_tensor(key: str, shape) -> torch.Tensor:
    shape = tuple(int(s) for s in shape)
    if key.endswith("num_batches_tracked"):
        return torch.tensor(0, dtype=torch.int64)
    lo, hi = bounds(key, shape)
    values = uniform(key, math.prod(shape))
    values *= np.float32(hi - lo)  # float32 arithmetic, each step rounded once (IEEE): the same everywhere
    values += np.float32(lo)
    return torch.from_numpy(values.reshape(shape))


def seeded_state_dict(shapes: dict) -> dict[str, torch.Tensor]:
    """{key: shape} (or a module's state_dict) -> {key: seeded tensor}."""
    return {k: seeded_tensor(k, getattr(v, "shape", v)) for k, v in shapes.items()}
