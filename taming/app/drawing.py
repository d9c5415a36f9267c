"""Drawing one sample: codes from the GPT (reporting progress), then pixels from the first stage.

At the training size the codes come from `taming.sampling.generate` (any code order); a larger grid
from `sample_window`, the sliding window over a raster-order model, whose fast mode moves the
window `fast_stride` codes at a time. Same settings, same generator: a sample drawn here equals
calling taming.sampling directly with those arguments.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from taming.app.conditioning import Condition
from taming.app.loading import LoadedRun
from taming.sampling import generate, sample_window
from taming.transformer.permuter import Identity

Progress = Callable[[float], None]  # fraction of the codes sampled so far, in (0, 1]
FAST_WINDOW_FRACTION = 4  # fast mode: the window moves a quarter of its side at a time (see sample_window)


@dataclass(frozen=True)
class Settings:
    size: tuple[int, int]  # output code grid (h, w); at least the training window
    top_k: int | None = 100  # None: every code
    temperature: float = 1.0
    seed: int = 0
    fast: bool = False  # larger outputs: the strided sliding window
    precision: str = "fp32"  # taming.transformer.decoding.PRECISIONS


def fast_stride(window: tuple[int, int]) -> int:
    return max(1, min(window) // FAST_WINDOW_FRACTION)


def check_size(run: LoadedRun, condition: Condition, size: tuple[int, int]) -> None:
    """Raise ValueError, saying why, when the model cannot sample a grid of `size` codes."""
    h, w = size
    wh, ww = run.window
    if h < wh or w < ww:
        raise ValueError(f"output {h}x{w} codes is smaller than the training window {wh}x{ww}")
    if (h, w) == run.window:
        return
    if not isinstance(run.model.permuter, Identity):
        raise ValueError(f"the sliding window needs raster code order; this model uses "
                         f"{type(run.model.permuter).__name__}: sample at {wh}x{ww}")
    if condition.grid is not None and tuple(condition.grid.shape[1:]) != (h, w):
        raise ValueError(f"the conditioning codes form a {tuple(condition.grid.shape[1:])} grid, not the "
                         f"{h}x{w} of the output: the sliding window needs both on one grid")


def _reporter(total: int, progress: Progress | None) -> Callable[[int, torch.Tensor], None] | None:
    """A sampler callback that reports each whole percent once (not every code: the page redraws)."""
    if progress is None:
        return None
    reported = [-1]

    def callback(k: int, codes: torch.Tensor) -> None:
        percent = (k + 1) * 100 // total
        if percent != reported[0]:
            reported[0] = percent
            progress((k + 1) / total)

    return callback


def sample_codes(run: LoadedRun, condition: Condition, settings: Settings,
                 progress: Progress | None = None) -> torch.Tensor:
    """-> code grid (1, h, w) in raster order."""
    check_size(run, condition, settings.size)
    h, w = settings.size
    gpt = run.model.transformer
    common = dict(temperature=settings.temperature, top_k=settings.top_k, precision=settings.precision,
                  generator=torch.Generator(device=run.device).manual_seed(settings.seed),
                  callback=_reporter(h * w, progress))
    if (h, w) == run.window:
        codes = generate(gpt, condition.codes, h * w, **common)  # (1, h*w) in the model's code order
        return run.model.permuter(codes, reverse=True).reshape(1, h, w)
    stride = fast_stride(run.window) if settings.fast else None
    if condition.grid is not None:  # a map: conditioning codes on the same grid, cropped with each window
        return sample_window(gpt, condition.grid, window=run.window, stride=stride, **common)
    blank = torch.zeros(1, h, w, dtype=torch.long, device=run.device)  # a class token or SOS heads every window
    return sample_window(gpt, None, blank, window=run.window, stride=stride, prefix=condition.codes, **common)


def decode_codes(run: LoadedRun, codes: torch.Tensor) -> torch.Tensor:
    """Code grid (1, h, w) -> image (1, 3, h * factor, w * factor) in [-1, 1]."""
    return run.model.first_stage_model.decode_codes(codes).clamp(-1, 1)
