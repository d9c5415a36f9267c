"""Sampling from the second-stage GPT: pure functions over a `GPT` (the cached decoding engine of
taming/transformer/decode/ runs them).

Shapes: B rows sampled together, V vocabulary, L conditioning length.

- `sample_logits`, `generate`, `sequence_nll`: taming/transformer/decode/loop.py (re-exported).
- `sample_window(gpt, cond_grid (B, H, W), ...) -> codes (B, H, W)`: the original sliding-window
  sampler for grids larger than the training window (see its docstring), with caches reused
  wherever the window input is unchanged, and a faster strided mode; `window_nll` scores a grid
  under its context.

`precision` is one of taming.precision.PRECISIONS: "fp32" (default) is float32 throughout, where
argmax gives the original's codes; "bf16" and "int8" decode faster, not bit-exact (their cost in
validation NLL: BENCHMARKS.md); "auto" is the hardware's choice (what the commands default to). The
model itself is never changed: concurrent calls at different precisions each get what they get alone.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from taming.transformer.decode import Generators, decoder, generate, sample_logits, sequence_nll
from taming.transformer.decode.loop import Callback
from taming.transformer.gpt import GPT


def window_origin(i: int, size: int, window: int, stride: int = 1) -> int:
    """First row (or column) of the window used to sample row (or column) i of a grid of `size`.

    stride 1 is the original rule: the target sits at local index
    `i if i <= window//2 else (window - (size - i) if size - i < window//2 else window//2)`,
    i.e. origin = clamp(i - window//2, 0, size - window).
    stride s > 1 (fast mode): the origin moves in steps of s, so it stands still for s targets;
    away from the borders the target's local index stays in [window//2 - s//2, window//2 - s//2 + s).
    """
    half = window // 2
    origin = stride * ((i - half + stride // 2) // stride)
    return max(0, min(size - window, origin))


def _start_index(start: int | Sequence[int] | None, H: int, W: int) -> int:
    if start is None:
        return 0
    if isinstance(start, int):
        k = start
    else:
        i, j = start
        k = int(i) * W + int(j)
    if not 0 <= k <= H * W:
        raise ValueError(f"sample_window: start {start!r} is outside the {H}x{W} grid")
    return k


def _window_pass(gpt: GPT, cond_grid: torch.Tensor | None, code_grid: torch.Tensor | None,
                 window: tuple[int, int], first: int | Sequence[int] | None, stride: int | None,
                 prefix: torch.Tensor | None, precision: str, max_cached_windows: int | None,
                 pick: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Visit the grid in raster order from `first` with the (strided) sliding window; at each target
    call pick(k, logits (B, V), codes) -> the codes (B,) to write there. Returns the grid (B, H, W).
    The caching scheme is described in `sample_window`."""
    if cond_grid is None and code_grid is None:
        raise ValueError("sample_window: give cond_grid or, for an unconditional model, code_grid (the grid size)")
    ref = cond_grid if cond_grid is not None else code_grid
    if ref.dim() != 3:
        raise ValueError(f"sample_window: grids must be (B, H, W), got shape {tuple(ref.shape)}")
    B, H, W = ref.shape
    device = ref.device
    if code_grid is None:
        codes = torch.zeros(B, H, W, dtype=torch.long, device=device)
    else:
        if cond_grid is not None and code_grid.shape != cond_grid.shape:
            raise ValueError(f"sample_window: code_grid {tuple(code_grid.shape)} and cond_grid "
                             f"{tuple(cond_grid.shape)} must have the same shape")
        codes = code_grid.to(device=device, dtype=torch.long).clone()
    h, w = min(window[0], H), min(window[1], W)
    s = 1 if stride is None else int(stride)
    if s < 1:
        raise ValueError(f"sample_window: stride must be >= 1, got {stride}")
    if prefix is not None:
        prefix = prefix.to(device=device, dtype=torch.long).expand(B, -1)  # (B, Lp)
    Lp = 0 if prefix is None else prefix.shape[1]
    Lc = Lp + (h * w if cond_grid is not None else 0)  # positions before the code crop
    if Lc == 0:
        raise ValueError("sample_window: an unconditional model needs prefix (its SOS token, shape (B, 1))")
    if Lc + h * w - 1 > gpt.block_size:
        raise ValueError(f"sample_window: a {h}x{w} window with {Lc} conditioning positions needs "
                         f"{Lc + h * w - 1} positions, the GPT's block_size is {gpt.block_size}")
    first = _start_index(first, H, W)
    tops = [window_origin(i, H, h, s) for i in range(H)]
    lefts = [window_origin(j, W, w, s) for j in range(W)]
    # Per window position: the largest crop index it predicts (sizes its cache) and the last
    # target that uses it (when its cache can go).
    reach: dict[tuple[int, int], int] = {}
    last_use: dict[tuple[int, int], int] = {}
    for k in range(first, H * W):
        i, j = divmod(k, W)
        key = (tops[i], lefts[j])
        reach[key] = max(reach.get(key, 0), (i - key[0]) * w + (j - key[1]))
        last_use[key] = k

    def tokens(t: int, l: int, a: int, b: int) -> torch.Tensor:
        """Model input of window (t, l) at positions [a, b): (B, b - a)."""
        parts = []
        if a < Lc:
            head = [] if prefix is None else [prefix]
            if cond_grid is not None:
                head.append(cond_grid[:, t:t + h, l:l + w].reshape(B, h * w))
            parts.append(torch.cat(head, dim=1)[:, a:min(b, Lc)])
        if b > Lc:
            crop = codes[:, t:t + h, l:l + w].reshape(B, h * w)
            parts.append(crop[:, max(a, Lc) - Lc:b - Lc])
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    dec = decoder(gpt, precision, B)
    open_windows: dict[tuple[int, int], list] = {}  # (t, l) -> [KVCache, positions filled]; in LRU order
    with dec.running():
        for k in range(first, H * W):
            i, j = divmod(k, W)
            key = t, l = tops[i], lefts[j]
            end = Lc + (i - t) * w + (j - l)  # the target is predicted by position end - 1
            entry = open_windows.pop(key, None)
            if entry is None:
                if max_cached_windows is not None and len(open_windows) >= max_cached_windows:
                    open_windows.pop(next(iter(open_windows)))
                entry = [dec.new_cache(Lc + reach[key]), 0]
            cache, filled = entry
            logits = dec.forward(tokens(t, l, filled, end), cache, filled)
            entry[1] = end
            if last_use[key] != k:
                open_windows[key] = entry  # re-inserted: most recently used last
            codes[:, i, j] = pick(k, logits, codes)
    return codes


def sample_window(gpt: GPT, cond_grid: torch.Tensor | None, code_grid: torch.Tensor | None = None,
                  window: tuple[int, int] = (16, 16), start: int | Sequence[int] | None = None,
                  temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  greedy: bool = False, generator: Generators = None, stride: int | None = None,
                  callback: Callback | None = None, *, prefix: torch.Tensor | None = None,
                  precision: str = "fp32", max_cached_windows: int | None = None) -> torch.Tensor:
    """Sample a code grid (B, H, W) of any size with a GPT trained on `window`-sized grids.

    The original sliding-window algorithm: codes are sampled in raster order; for target (i, j)
    the window's top-left corner is (window_origin(i, H, h), window_origin(j, W, w)); the model
    sees `prefix`, then the conditioning crop cond_grid[:, window] flattened (h*w codes), then the
    code crop flattened, and the target is read at the position predicting its crop index
    local_i * w + local_j.

    cond_grid (B, H, W): conditioning codes on the same grid (segmentation, depth, low-res image),
    or None for an unconditional model. prefix (B or 1, Lp): codes put before the conditioning crop
    in every window: the SOS token of unconditional models (then cond_grid is None and code_grid
    gives the grid size) or a class token. code_grid (B, H, W): initial codes (default zeros);
    with `start` (raster index k, or (i, j)) codes before it are kept and the rest sampled (image
    completion). The grid may be smaller than the window: the window shrinks to the grid, and a
    grid exactly window-sized gives the same codes as `generate`.

    What is computed: under the causal mask nothing after the target inside the window affects it,
    so only the positions up to the target are fed. Every window position keeps a KV cache of what
    it was fed; all codes before the target are final, so a later target in the same window only
    feeds the codes between the previous target and itself (one position when they are adjacent).
    The codes are those of the original's full recompute (argmax: the same, up to float rounding
    of the logits). A cache is dropped after the last target that uses its window;
    max_cached_windows bounds how many stay open (the least recently used is dropped and its
    window recomputed when needed again).

    stride s > 1 (fast mode): the window moves in steps of s rows and s columns, so one window
    position samples an s x s block of targets, s in a row as one-position cached decode steps.
    The target then sits anywhere in [h/2 - s/2, h/2 + s/2) instead of at h/2 (less context above
    or to the left for some codes). `window_nll` scores any grid under a mode's context;
    `benchmarks/bench_sampling.py --quality` measures what each stride costs in likelihood
    (numbers in BENCHMARKS.md).

    callback(k, codes (B, H, W)) is called after each sampled code k (raster index).
    """
    def pick(k: int, logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        chosen = sample_logits(logits, temperature, top_k, top_p, greedy, generator)
        if callback is not None:
            i, j = divmod(k, codes.shape[2])
            codes[:, i, j] = chosen
            callback(k, codes)
        return chosen

    return _window_pass(gpt, cond_grid, code_grid, window, start, stride, prefix, precision,
                        max_cached_windows, pick)


def window_nll(gpt: GPT, cond_grid: torch.Tensor | None, code_grid: torch.Tensor,
               window: tuple[int, int] = (16, 16), stride: int | None = None, *,
               prefix: torch.Tensor | None = None, precision: str = "fp32") -> torch.Tensor:
    """Negative log-likelihood (nats) of every code of code_grid (B, H, W) under the sliding-window
    context of `sample_window` (same window, stride, prefix) -> (B, H, W). Costs one sampling pass."""
    nll = torch.zeros(code_grid.shape, dtype=torch.float32)
    W = code_grid.shape[2]

    def pick(k: int, logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        i, j = divmod(k, W)
        given = codes[:, i, j]
        logp = logits.float().log_softmax(-1).gather(-1, given[:, None])[:, 0]
        nll[:, i, j] = -logp.cpu()
        return given

    _window_pass(gpt, cond_grid, code_grid, window, 0, stride, prefix, precision, None, pick)
    return nll


__all__ = ["Generators", "sample_logits", "generate", "sequence_nll", "window_origin", "sample_window", "window_nll"]
