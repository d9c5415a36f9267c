"""Drawing one sample: codes from the GPT (reporting progress), then pixels from the first stage.

At the training size the codes come from `taming.sampling.generate` (any code order); a larger grid
from `sample_window`, the sliding window over a raster-order model, whose fast mode moves the
window `fast_stride` codes at a time. Same settings, same generator: a sample drawn here equals
calling taming.sampling directly with those arguments.

One spec (`SamplingSpec`: top-k, top-p, temperature, guidance, completion, precision, seed, window
stride) and one grid sampler (`sample_grid`) serve the commands, the app, the demo and scenes.
Progress: `progress(fraction)` once per whole percent. Preview: `preview(codes, sampled)` every
PREVIEW_ROWS rows' worth of codes with the grid so far (codes not yet sampled are 0) and the mask of
sampled codes, in any code order; `masked_image` decodes it, the rest grey. Completion
(`keep_rows`): the top rows of given image codes are kept and the rest sampled, as the original's
"continue an image".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from taming.config import ConfigError
from taming.generation.conditioning import Condition
from taming.generation.runs import LoadedRun
from taming.sampling import generate, sample_window
from taming.transformer.decode import Generators
from taming.transformer.permuter import Identity

Progress = Callable[[float], None]  # fraction of the codes sampled so far, in (0, 1]
Preview = Callable[[torch.Tensor, torch.Tensor], None]  # (codes so far (B, h, w), sampled mask (1, h, w))
FAST_WINDOW_FRACTION = 4  # fast mode: the window moves a quarter of its side at a time (see sample_window)
PREVIEW_ROWS = 2  # rows of codes between two live previews (decoding costs about one row of sampling)
GREY = 0.0  # codes not yet sampled, in previews and animation frames ([-1, 1])
FAR_BEYOND = 4  # outputs more than this many training windows along a side get a warning


@dataclass(frozen=True)
class SamplingSpec:
    """How to sample, for every command, the app, the demo and scenes."""
    size: tuple[int, int] | None = None  # output code grid (h, w); None: the conditioning's grid or the training window
    top_k: int | None = 100  # None: every code (clipped to the vocabulary)
    temperature: float = 1.0
    seed: int = 0
    fast: bool = False  # larger outputs: the window moves fast_stride codes at a time
    precision: str = "fp32"  # taming.precision.PRECISIONS
    keep_rows: int = 0  # completion: rows of the given image codes kept at the top (0: sample everything)
    top_p: float | None = None  # nucleus sampling
    cfg_scale: float | None = None  # classifier-free guidance (models trained with cfg_dropout), training size only
    stride: int | None = None  # the window's stride in codes, when not `fast` (None: the exact window per code)

    def window_stride(self, window: tuple[int, int]) -> int | None:
        return fast_stride(window) if self.fast else self.stride


def fast_stride(window: tuple[int, int]) -> int:
    return max(1, min(window) // FAST_WINDOW_FRACTION)


def check(run: LoadedRun, condition: Condition, spec: SamplingSpec, size: tuple[int, int],
          given: torch.Tensor | None) -> None:
    """Raise ValueError, saying why, when the model cannot sample a grid of `size` codes with `spec`."""
    (h, w), (wh, ww) = size, run.window
    raster, order = isinstance(run.model.permuter, Identity), type(run.model.permuter).__name__
    if h < wh or w < ww:
        raise ValueError(f"output {h}x{w} codes is smaller than the training window {wh}x{ww}")
    if size != run.window and not raster:
        raise ValueError(f"the sliding window needs raster code order; this model uses {order}: sample at {wh}x{ww}")
    if size != run.window and condition.grid is not None and tuple(condition.grid.shape[1:]) != size:
        raise ValueError(f"the conditioning codes form a {tuple(condition.grid.shape[1:])} grid, not the "
                         f"{h}x{w} of the output: the sliding window needs both on one grid")
    if spec.cfg_scale is not None and (spec.keep_rows or size != run.window):
        raise ValueError(f"guidance samples at the training size {wh}x{ww}, without completion")
    if spec.keep_rows:
        if not raster:
            raise ValueError(f"completing an image needs raster code order; this model uses {order}")
        if given is None or tuple(given.shape[1:]) != (h, w):
            raise ValueError(f"completion needs the image's codes on the {h}x{w} output grid")
        if not 0 < spec.keep_rows < h:
            raise ValueError(f"rows to keep must be in 1..{h - 1}, got {spec.keep_rows}")


def size_warning(run: LoadedRun, size: tuple[int, int]) -> str | None:
    """A warning when the output is far beyond the training window (the sliding window then invents
    structure the model never saw whole: repeated horizons, drifting layouts)."""
    (h, w), (wh, ww) = size, run.window
    if h <= FAR_BEYOND * wh and w <= FAR_BEYOND * ww:
        return None
    return (f"{h}x{w} codes is more than {FAR_BEYOND}x the {wh}x{ww}-code window the model was trained on: "
            "expect repeated or drifting structure")


def grid_size(run: LoadedRun, condition: Condition, spec: SamplingSpec) -> tuple[int, int]:
    if spec.size is not None:
        return tuple(spec.size)
    return tuple(condition.grid.shape[1:]) if condition.grid is not None else run.window


def _reporter(run: LoadedRun, size: tuple[int, int], offset: int, progress: Progress | None,
              preview: Preview | None, every: int) -> Callable[[int, torch.Tensor], None] | None:
    """A sampler callback that reports each whole percent once (not every code: the page redraws)
    and the grid so far every `every` codes (raster index, kept codes counted). `offset`: codes kept
    before the first sampled (completion)."""
    if progress is None and preview is None:
        return None
    h, w = size
    total, reported = h * w - offset, [-1]
    permuter = run.model.permuter
    order = permuter(torch.arange(h * w, device=run.device)[None], reverse=True)  # raster position -> its step

    def callback(k: int, codes: torch.Tensor) -> None:
        window = codes.dim() == 3  # sample_window: (B, h, w) and raster indices; generate: (B, k + 1)
        done = k + 1 - (offset if window else 0)
        percent = done * 100 // total
        if progress is not None and percent != reported[0]:
            reported[0] = percent
            progress(done / total)
        index = done + offset  # codes final after this one
        if preview is not None and index % every == 0 and index < h * w:
            if window:
                grid, sampled = codes.clone(), torch.arange(h * w, device=codes.device) < index
            else:
                filled = torch.cat([codes, codes.new_zeros(codes.shape[0], h * w - index)], 1)
                grid, sampled = permuter(filled, reverse=True), order[0] < index
            preview(grid.reshape(-1, h, w), sampled.reshape(1, h, w))

    return callback


@torch.no_grad()
def sample_grid(run: LoadedRun, condition: Condition, spec: SamplingSpec, progress: Progress | None = None,
                preview: Preview | None = None, given: torch.Tensor | None = None,
                generator: Generators = None, preview_every: int | None = None) -> torch.Tensor:
    """The one grid sampler (the module docstring) -> code grids (B, h, w) in raster order, B the
    conditioning's rows. given (B, h, w): image codes whose top `spec.keep_rows` rows are kept.
    `generator`: one per row (default: one seeded by spec.seed); a preview every `preview_every` codes."""
    size = grid_size(run, condition, spec)
    try:
        check(run, condition, spec, size, given)
    except ValueError as exc:  # the app shows these; a command reports them as a user error
        raise ConfigError(f"{run.source.name}: {exc}") from None
    h, w = size
    model = run.model
    keep = spec.keep_rows
    top_k = None if spec.top_k is None else min(spec.top_k, model.vocab_size)
    generator = generator if generator is not None else torch.Generator(device=run.device).manual_seed(spec.seed)
    every = preview_every or PREVIEW_ROWS * w
    common = dict(temperature=spec.temperature, top_k=top_k, top_p=spec.top_p, precision=spec.precision,
                  generator=generator, callback=_reporter(run, (h, w), keep * w, progress, preview, every))
    if (h, w) == run.window and not keep:
        uncond = model.null_conditioning(condition.codes) if spec.cfg_scale is not None else None
        codes = generate(model.transformer, condition.codes, h * w, cfg_scale=spec.cfg_scale, uncond_codes=uncond,
                         **common)  # (B, h*w) in the model's code order
        return model.permuter(codes, reverse=True).reshape(-1, h, w)
    # a map: conditioning codes on the same grid, cropped with each window; else a class token or SOS heads
    # every window of a blank grid. Completion starts after the given image's kept rows.
    prefix = None if condition.grid is not None else condition.codes
    initial = given.to(run.device).clone() if keep else None
    if initial is None and prefix is not None:
        initial = torch.zeros(prefix.shape[0], h, w, dtype=torch.long, device=run.device)
    return sample_window(model.transformer, condition.grid, initial, window=run.window, prefix=prefix,
                         start=(keep, 0) if keep else None, stride=spec.window_stride(run.window), **common)


def decode_codes(run: LoadedRun, codes: torch.Tensor) -> torch.Tensor:
    """Code grids (B, h, w) -> images (B, 3, h * factor, w * factor) in [-1, 1], decoded one at a time:
    batched convolutions round differently with the batch size, and an image must not depend on its batch."""
    fs = run.model.first_stage_model
    return torch.cat([fs.decode_codes(codes[b:b + 1]) for b in range(codes.shape[0])]).clamp(-1, 1)


def masked_image(run: LoadedRun, codes: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
    """A partial grid (B, h, w) decoded, the codes not yet sampled (`sampled` (1, h, w) False) grey."""
    mask = sampled.float()[:, None].repeat_interleave(run.factor, 2).repeat_interleave(run.factor, 3)
    return decode_codes(run, codes) * mask + GREY * (1 - mask)


def image_codes(run: LoadedRun, image: torch.Tensor) -> torch.Tensor:
    """A real image (1, 3, H, W) in [-1, 1] -> its first-stage code grid (1, H / factor, W / factor)."""
    return run.model.first_stage_model.encode_to_codes(image.to(run.device))
