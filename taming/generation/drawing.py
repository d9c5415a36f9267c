"""Drawing one sample: codes from the GPT (reporting progress), then pixels from the first stage.

At the training size the codes come from `taming.sampling.generate` (any code order); a larger grid
from `sample_window`, the sliding window over a raster-order model, whose fast mode moves the
window `fast_stride` codes at a time. Same settings, same generator: a sample drawn here equals
calling taming.sampling directly with those arguments.

Live preview: `preview(codes (1, h, w), rows_done)` is called every PREVIEW_ROWS finished rows with
the grid sampled so far (codes not yet sampled are 0), for raster-order models; `preview_image`
decodes it and greys out the rows still to come. Completion (`Settings.keep_rows`): the top rows of
given image codes are kept and the rest sampled, as the original's "continue an image".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from taming.generation.conditioning import Condition
from taming.generation.runs import LoadedRun
from taming.sampling import generate, sample_window
from taming.transformer.permuter import Identity

Progress = Callable[[float], None]  # fraction of the codes sampled so far, in (0, 1]
Preview = Callable[[torch.Tensor, int], None]  # (codes so far (1, h, w), rows finished)
FAST_WINDOW_FRACTION = 4  # fast mode: the window moves a quarter of its side at a time (see sample_window)
PREVIEW_ROWS = 2  # rows of codes between two live previews (decoding costs about one row of sampling)
FAR_BEYOND = 4  # outputs more than this many training windows along a side get a warning


@dataclass(frozen=True)
class Settings:
    size: tuple[int, int]  # output code grid (h, w); at least the training window
    top_k: int | None = 100  # None: every code
    temperature: float = 1.0
    seed: int = 0
    fast: bool = False  # larger outputs: the strided sliding window
    precision: str = "fp32"  # taming.precision.PRECISIONS
    keep_rows: int = 0  # completion: rows of the given image codes kept at the top (0: sample everything)


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


def size_warning(run: LoadedRun, size: tuple[int, int]) -> str | None:
    """A warning when the output is far beyond the training window (the sliding window then invents
    structure the model never saw whole: repeated horizons, drifting layouts)."""
    (h, w), (wh, ww) = size, run.window
    if h <= FAR_BEYOND * wh and w <= FAR_BEYOND * ww:
        return None
    return (f"{h}x{w} codes is more than {FAR_BEYOND}x the {wh}x{ww}-code window the model was trained on: "
            "expect repeated or drifting structure")


def _reporter(size: tuple[int, int], offset: int, progress: Progress | None, preview: Preview | None,
              raster: bool) -> Callable[[int, torch.Tensor], None] | None:
    """A sampler callback that reports each whole percent once (not every code: the page redraws)
    and, in raster order, the grid every PREVIEW_ROWS rows. `offset`: codes kept before the first sampled."""
    if progress is None and preview is None:
        return None
    h, w = size
    total, reported = h * w - offset, [-1]

    def callback(k: int, codes: torch.Tensor) -> None:
        done = k + 1 - (offset if codes.dim() == 3 else 0)  # sample_window counts raster indices
        percent = done * 100 // total
        if progress is not None and percent != reported[0]:
            reported[0] = percent
            progress(done / total)
        index = done + offset  # raster index after this code
        if preview is not None and raster and index % (PREVIEW_ROWS * w) == 0 and index < h * w:
            grid = codes if codes.dim() == 3 else torch.cat(
                [codes.new_zeros(1, offset), codes, codes.new_zeros(1, h * w - index)], 1).reshape(1, h, w)
            preview(grid.clone(), index // w)

    return callback


def sample_codes(run: LoadedRun, condition: Condition, settings: Settings, progress: Progress | None = None,
                 preview: Preview | None = None, given: torch.Tensor | None = None) -> torch.Tensor:
    """-> code grid (1, h, w) in raster order. given (1, h, w): image codes whose top
    `settings.keep_rows` rows are kept (completion)."""
    check_size(run, condition, settings.size)
    h, w = settings.size
    gpt = run.model.transformer
    raster = isinstance(run.model.permuter, Identity)
    keep = settings.keep_rows
    common = dict(temperature=settings.temperature, top_k=settings.top_k, precision=settings.precision,
                  generator=torch.Generator(device=run.device).manual_seed(settings.seed),
                  callback=_reporter((h, w), keep * w, progress, preview, raster))
    if keep:
        if not raster:
            raise ValueError(f"completing an image needs raster code order; this model uses "
                             f"{type(run.model.permuter).__name__}")
        if given is None or tuple(given.shape) != (1, h, w):
            raise ValueError(f"completion needs the image's codes on the {h}x{w} output grid")
        if not 0 < keep < h:
            raise ValueError(f"rows to keep must be in 1..{h - 1}, got {keep}")
        grid = condition.grid if condition.grid is not None else None
        prefix = None if grid is not None else condition.codes
        return sample_window(gpt, grid, given.to(run.device).clone(), window=run.window, start=(keep, 0),
                             stride=fast_stride(run.window) if settings.fast else None, prefix=prefix, **common)
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


def preview_image(run: LoadedRun, codes: torch.Tensor, rows: int) -> torch.Tensor:
    """A partial grid (1, h, w) decoded, the rows not yet sampled shown grey: (1, 3, H, W) in [-1, 1]."""
    image = decode_codes(run, codes)
    image[..., rows * run.factor:, :] = 0.0
    return image


def image_codes(run: LoadedRun, image: torch.Tensor) -> torch.Tensor:
    """A real image (1, 3, H, W) in [-1, 1] -> its first-stage code grid (1, H / factor, W / factor)."""
    return run.model.first_stage_model.encode_to_codes(image.to(run.device))
