"""Sampling from the second-stage GPT: pure functions over a `GPT` and a preallocated `KVCache`.

Shapes: B rows sampled together, V vocabulary, L conditioning length.

- `sample_logits(logits (B, V)) -> (B,)`: temperature, top-k, top-p (nucleus), argmax.
- `prefill(gpt, tokens (B, L), cache) -> logits (B, V)` of the last position.
- `decode_one(gpt, token (B,), cache, pos) -> logits (B, V)`: one more position.
- `sequence_nll(gpt, cond_codes (B, L), codes (B, S)) -> (B, S)`: teacher-forced NLL computed the
  way `generate` computes its logits (the quality cost of a sampling precision).
- `generate(gpt, cond_codes (B, L), steps) -> codes (B, steps)`: prefill the conditioning once,
  then one cached position per sampled code. In argmax mode it gives the same codes as the
  original full-recompute sampler. Optional classifier-free guidance batches the conditional and
  unconditional rows in one forward.
- `sample_window(gpt, cond_grid (B, H, W), ...) -> codes (B, H, W)`: the original sliding-window
  sampler for grids larger than the training window (see its docstring), with caches reused
  wherever the window input is unchanged, and a faster strided mode.

The model is put in eval mode while sampling (dropout off) and restored afterwards. Everything runs
under `torch.inference_mode()`. `precision`:
- "fp32" (default): float32 throughout; argmax gives the original's codes.
- "auto": the choice of taming.hardware for the GPT's device (what the commands default to):
  "int8" on CPUs without AMX, "bf16" on AMX CPUs and GPUs with bf16, else "fp32".
- "bf16": the key/value cache in bf16 (decoding reads the whole cache per code: half the bytes)
  and, on the CPU, one-position steps through packed bf16 weight copies, the prefill in bf16 where
  bf16 GEMMs are fast (else float32); on a GPU, bf16 autocast. Not bit-equal to float32.
- "int8" (CPU): one-position steps (up to 256 rows) use int8 weights (one scale per output row) and
  activations quantized per row (one native call per step, taming/transformer/cpu_step.py; FBGEMM's
  dynamic quantization where it does not apply): a quarter of the float32 weight bytes. The
  key/value cache is int8 with a float32 scale per vector (attention still computed in float32);
  where bf16 GEMMs are fast, the prefill runs in bf16, else in int8 too. The least exact; its cost
  in validation NLL is measured in BENCHMARKS.md.
taming.hardware's `decode_plan` holds these per-phase choices and the measurements behind them.
On the CPU, the one-code attention over a bf16 or int8 cache runs a C kernel built for the CPU at
hand (taming/transformer/cpu_attention.py, taming/native.py): the first use on a machine compiles
it (~1 s with gcc), later ones load it from the kernel cache.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence, Union

import torch

from taming.hardware import decode_plan, decode_precision
from taming.transformer.decoding import PRECISIONS
from taming.transformer.cpu_step import native_step
from taming.transformer.gpt import GPT, KVCache
from taming.transformer.static_decode import decode_step

Callback = Callable[[int, torch.Tensor], None]
Generators = Union[torch.Generator, Sequence[torch.Generator], None]  # one for all rows, or one per row


def sample_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, greedy: bool = False,
                  generator: Generators = None) -> torch.Tensor:
    """logits (B, V) -> codes (B,).

    greedy: argmax (temperature, top_k, top_p ignored). Otherwise logits / temperature, keep the
    top_k largest (ties with the k-th kept, as the original), keep the smallest set of codes whose
    probability reaches top_p (the most likely code always stays), then draw with `generator`
    (one torch.Generator, or a sequence of B: row b draws from generator[b] alone).
    """
    if greedy:
        return logits.argmax(dim=-1)
    if temperature <= 0:
        raise ValueError(f"sample_logits: temperature must be > 0, got {temperature} (use greedy=True for argmax)")
    logits = logits.float() if temperature == 1.0 else logits.float() / temperature  # x / 1 == x: one op less
    vocab = logits.shape[-1]
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"sample_logits: top_k must be >= 1, got {top_k}")
        if top_k < vocab:
            kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1)
            logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        if top_p <= 0:
            raise ValueError(f"sample_logits: top_p must be in (0, 1], got {top_p}")
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability of the codes ranked above each one
        drop_sorted = before >= top_p  # rank 0 has before == 0: never dropped
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return _draw(logits.softmax(dim=-1), generator)


def _uniform(rows: int, generator: Generators, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(rows, 1) uniform numbers: from one generator, or one number from each row's own generator,
    so that a row's draws do not depend on which other rows share its batch."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(rows, 1, generator=generator, device=device, dtype=dtype)
    if len(generator) != rows:
        raise ValueError(f"sampling: {len(generator)} generators for {rows} rows (give one per row)")
    return torch.cat([torch.rand(1, 1, generator=g, device=device, dtype=dtype) for g in generator])


def _draw(probs: torch.Tensor, generator: Generators) -> torch.Tensor:
    """One code per row of probs (B, V) by inverting the cumulative distribution: a single uniform
    number per row (cheaper than torch.multinomial, which runs once per code)."""
    cdf = probs.cumsum(dim=-1)  # (B, V)
    u = _uniform(probs.shape[0], generator, probs.device, cdf.dtype)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)[:, 0]  # first code with cdf > u * total
    # u * total can round up to total: then take the last code of nonzero probability (on the CPU
    # only looked for when it happened: three ops of a few microseconds each per sampled code)
    over = idx >= probs.shape[-1]
    if probs.device.type == "cpu" and not bool(over.any()):
        return idx
    last = (probs > 0).cumsum(dim=-1).argmax(dim=-1)
    return torch.where(over, last, idx)


def prefill(gpt: GPT, tokens: torch.Tensor, cache: KVCache, start_pos: int = 0) -> torch.Tensor:
    """Write tokens (B, T) at positions [start_pos, start_pos + T) into cache -> logits (B, V) of the last."""
    return gpt.forward_with_cache(tokens, cache, start_pos, last_only=True)


def decode_one(gpt: GPT, token: torch.Tensor, cache: KVCache, pos: int) -> torch.Tensor:
    """Write token (B,) at position `pos` (earlier positions cached) -> logits (B, V) predicting pos + 1."""
    return gpt.forward_with_cache(token[:, None], cache, pos, last_only=True)


@contextlib.contextmanager
def _sampling_mode(gpt: GPT, precision: str, rows: int) -> Iterator[None]:
    """Eval mode (restored afterwards), no autograd, and the precision's decoding weights."""
    modes = [(m, m.training) for m in gpt.modules()]
    gpt.eval()
    on_gpu = gpt.head.weight.device.type != "cpu"
    amp = (torch.autocast(gpt.head.weight.device.type, dtype=torch.bfloat16)
           if on_gpu and precision == "bf16" else contextlib.nullcontext())
    try:
        # the weights' layout is changed and restored outside inference mode: they stay normal tensors
        with gpt.decoding(precision, rows), torch.inference_mode(), amp:
            yield
    finally:
        for m, training in modes:
            m.training = training


def resolve_precision(gpt: GPT, precision: str) -> str:
    """precision checked, and "auto" replaced by taming.hardware's choice for the GPT's device."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return decode_precision(precision, gpt.head.weight.device)


def _cache_dtype(gpt: GPT, precision: str, rows: int) -> torch.dtype:
    return decode_plan(precision, gpt.head.weight.device, rows).cache  # taming/hardware.py says why


STATIC_DEVICES = ("cuda",)  # where generate decodes with a static cache and a CUDA graph


def _decoder(gpt: GPT, cache: KVCache, rows: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """step(token (rows,), pos) -> logits (rows, V): a replayed CUDA graph over a static cache on a
    GPU (taming/transformer/static_decode.py); on the CPU with an int8 cache, one native call per
    step where it is built (taming/transformer/cpu_step.py); the plain cached forward elsewhere."""
    device = cache.k[0].device.type
    if device in STATIC_DEVICES:
        return decode_step(gpt, cache, rows, graph=device == "cuda")
    native = native_step(gpt, cache, rows) if device == "cpu" and cache.quantized else None
    if native is not None:
        return native
    return lambda token, pos: decode_one(gpt, token, cache, pos)


@contextlib.contextmanager
def _stepping(gpt: GPT, precision: str, rows: int, length: int) -> Iterator[tuple[KVCache, Callable]]:
    """The sampling mode of `precision` (already resolved) with a cache of `length` positions for
    `rows` rows and its one-code step: what generate and sequence_nll run on."""
    with _sampling_mode(gpt, precision, rows):
        cache = gpt.new_cache(rows, length, dtype=_cache_dtype(gpt, precision, rows))
        yield cache, _decoder(gpt, cache, rows)  # before prefill: a graph capture clears the cache


def generate(gpt: GPT, cond_codes: torch.Tensor, steps: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
             generator: Generators = None, cfg_scale: float | None = None,
             uncond_codes: torch.Tensor | None = None, callback: Callback | None = None,
             precision: str = "fp32") -> torch.Tensor:
    """Sample `steps` codes after cond_codes (B, L) -> codes (B, steps).

    cond_codes is everything the model sees before the first sampled code: conditioning codes,
    an SOS token for unconditional models (L = 1), and optionally given image codes. One cache of
    L + steps - 1 positions is allocated; the conditioning is prefilled once, then each sampled
    code is fed as one new position (on a GPU: one replay of a CUDA graph captured for the call).

    Classifier-free guidance (cfg_scale not None): uncond_codes (B or 1, L) is the "null"
    conditioning of the same length (the model defines it, e.g. a reserved token repeated). Both
    are run as 2B rows of one forward, and the logits sampled from are u + cfg_scale * (c - u):
    scale 1 is conditional sampling, 0 unconditional.

    generator: one torch.Generator for all rows, or one per row (B of them): then row b's codes
    depend only on generator[b] and its conditioning, not on the batch it is sampled in.

    callback(k, codes (B, k + 1)) is called after each sampled code.
    """
    if cond_codes.dim() != 2 or cond_codes.shape[1] < 1:
        raise ValueError(f"generate: cond_codes must be (B, L) with L >= 1 (an SOS token for unconditional "
                         f"models), got shape {tuple(cond_codes.shape)}")
    if steps < 1:
        raise ValueError(f"generate: steps must be >= 1, got {steps}")
    B, L = cond_codes.shape
    if L + steps - 1 > gpt.block_size:
        raise ValueError(f"generate: {L} conditioning codes + {steps} steps need {L + steps - 1} positions, "
                         f"the GPT's block_size is {gpt.block_size}")
    rows = cond_codes
    if cfg_scale is not None:
        if uncond_codes is None:
            raise ValueError("generate: cfg_scale needs uncond_codes (the null conditioning)")
        if uncond_codes.dim() != 2 or uncond_codes.shape[0] not in (1, B) or uncond_codes.shape[1] != L:
            raise ValueError(f"generate: uncond_codes {tuple(uncond_codes.shape)} must be (B or 1, L) with "
                             f"cond_codes {tuple(cond_codes.shape)}")
        uncond_codes = uncond_codes.to(cond_codes.device).expand(B, -1)
        rows = torch.cat([cond_codes, uncond_codes])  # (2B, L)
    precision = resolve_precision(gpt, precision)
    out = torch.empty(B, steps, dtype=torch.long, device=cond_codes.device)
    with _stepping(gpt, precision, rows.shape[0], L + steps - 1) as (cache, step):
        logits = prefill(gpt, rows, cache)  # (B or 2B, V)
        for k in range(steps):
            if cfg_scale is not None:
                cond, uncond = logits.float().chunk(2)
                logits = uncond + cfg_scale * (cond - uncond)
            token = sample_logits(logits, temperature, top_k, top_p, greedy, generator)  # (B,)
            out[:, k] = token
            if callback is not None:
                callback(k, out[:, :k + 1])
            if k + 1 < steps:
                feed = token if cfg_scale is None else torch.cat([token, token])
                logits = step(feed, L + k)
    return out


def sequence_nll(gpt: GPT, cond_codes: torch.Tensor, codes: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Negative log-likelihood (nats) of codes (B, S) after cond_codes (B, L) -> (B, S), with logits
    computed as `generate` computes them at this precision (prefill, then one cached step per
    code through the same step): the validation NLL that measures a sampling precision's cost."""
    if cond_codes.dim() != 2 or codes.dim() != 2 or codes.shape[0] != cond_codes.shape[0] or codes.shape[1] < 1:
        raise ValueError(f"sequence_nll: cond_codes (B, L) and codes (B, S >= 1), got {tuple(cond_codes.shape)} "
                         f"and {tuple(codes.shape)}")
    (B, L), S = cond_codes.shape, codes.shape[1]
    if L + S - 1 > gpt.block_size:
        raise ValueError(f"sequence_nll: {L} + {S} codes exceed the GPT's block_size {gpt.block_size}")
    precision = resolve_precision(gpt, precision)
    nll = torch.empty(B, S, device=codes.device)
    with _stepping(gpt, precision, B, L + S - 1) as (cache, step):
        logits = prefill(gpt, cond_codes, cache)  # (B, V) predicting codes[:, 0]
        for k in range(S):
            nll[:, k] = -logits.float().log_softmax(-1).gather(-1, codes[:, k:k + 1])[:, 0]
            if k + 1 < S:
                logits = step(codes[:, k], L + k)
    return nll


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

    precision = resolve_precision(gpt, precision)
    open_windows: dict[tuple[int, int], list] = {}  # (t, l) -> [KVCache, positions filled]; in LRU order
    with _sampling_mode(gpt, precision, B):
        for k in range(first, H * W):
            i, j = divmod(k, W)
            key = t, l = tops[i], lefts[j]
            end = Lc + (i - t) * w + (j - l)  # the target is predicted by position end - 1
            entry = open_windows.pop(key, None)
            if entry is None:
                if max_cached_windows is not None and len(open_windows) >= max_cached_windows:
                    open_windows.pop(next(iter(open_windows)))
                entry = [gpt.new_cache(B, Lc + reach[key], dtype=_cache_dtype(gpt, precision, B)), 0]
            cache, filled = entry
            logits = gpt.forward_with_cache(tokens(t, l, filled, end), cache, filled, last_only=True)
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


__all__ = ["sample_logits", "prefill", "decode_one", "generate", "sequence_nll", "window_origin", "sample_window",
           "window_nll"]
