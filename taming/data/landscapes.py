"""Procedural landscapes with segmentation maps: a built-in dataset that needs no files.

Each index renders one deterministic scene (numpy only, vectorised, a few ms at 256x256): a sky with a
vertical colour gradient, an optional sun and fractal clouds; one to three mountain ranges with ridged
fractal crest lines, atmospheric haze and snow caps; a lake that mirrors the sky and mountains with
ripples, or a meadow; grass; conifers and rocks placed with perspective (smaller near the horizon).
Any height and width work (aspect ratios included); noise scales with the image, so a scene looks the
same at 64 px and at 512 px.

Labels (n_labels = 8, one-hot under "segmentation"):
    0 sky   1 cloud   2 mountain   3 snow   4 water   5 grass   6 tree   7 rock

Determinism: sample `i` of split `s` with seed `seed` is drawn from numpy's PCG64 seeded with
[seed, split id, i]: train (0) and validation (1) are disjoint streams; the same triple always gives
the same arrays, in any DataLoader worker (and on any machine with the same numpy and Pillow, whose
resampling the noise uses).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .errors import DataError

CLASSES = ("sky", "cloud", "mountain", "snow", "water", "grass", "tree", "rock")
N_LABELS = len(CLASSES)
SKY, CLOUD, MOUNTAIN, SNOW, WATER, GRASS, TREE, ROCK = range(N_LABELS)
SPLITS = {"train": 0, "validation": 1, "val": 1, "test": 2}
# Colours for showing label maps, one per class, in [-1, 1].
PALETTE = np.array([[110, 160, 230], [245, 245, 245], [110, 100, 100], [255, 255, 255], [40, 90, 170],
                    [90, 160, 60], [30, 90, 40], [150, 140, 130]], dtype=np.float32) / 127.5 - 1

# (zenith, horizon) sky colours in [0, 1]: clear day, hazy day, dusk, overcast.
SKY_PALETTES = np.array([
    [[0.16, 0.36, 0.72], [0.66, 0.80, 0.92]],
    [[0.30, 0.50, 0.78], [0.85, 0.88, 0.90]],
    [[0.22, 0.20, 0.45], [0.98, 0.62, 0.35]],
    [[0.48, 0.52, 0.58], [0.78, 0.80, 0.82]],
], dtype=np.float32)
GRASS_COLOURS = np.array([[0.30, 0.52, 0.18], [0.42, 0.55, 0.20], [0.55, 0.55, 0.25], [0.22, 0.42, 0.20]],
                         dtype=np.float32)
ROCK_COLOUR = np.array([0.46, 0.44, 0.42], dtype=np.float32)
MOUNTAIN_COLOURS = np.array([[0.36, 0.34, 0.36], [0.40, 0.36, 0.30], [0.30, 0.34, 0.30]], dtype=np.float32)


def _resize(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Smoothly resize a float grid to (h, w) (PIL bicubic on mode F)."""
    return np.asarray(Image.fromarray(grid.astype(np.float32), mode="F").resize((w, h), Image.BICUBIC))


def fractal2d(rng: np.random.Generator, h: int, w: int, cells: float, octaves: int = 4,
              stretch: float = 1.0) -> np.ndarray:
    """(h, w) fractal value noise, roughly in [-1, 1]; `cells` blobs across the height h, `stretch`
    makes features wider than tall (clouds). Octaves are summed on the finest small grid, so only
    one full-size resize is paid."""
    fine_y = max(2, int(round(cells * 2 ** (octaves - 1))))
    fine_x = max(2, int(round(fine_y * w / h / stretch)))
    out = np.zeros((fine_y + 1, fine_x + 1), np.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        ny = max(2, int(round(cells * 2 ** octave)))
        nx = max(2, int(round(ny * w / h / stretch)))
        grid = rng.uniform(-1, 1, (ny + 1, nx + 1))
        out += amplitude * (grid if grid.shape == out.shape else _resize(grid, *out.shape))
        total += amplitude
        amplitude *= 0.5
    return _resize(out / total, h, w)


def fractal1d(rng: np.random.Generator, n: int, cells: float, octaves: int = 5, ridged: bool = False) -> np.ndarray:
    """(n,) fractal noise in about [-1, 1] by linear interpolation of random knots; `ridged` folds
    each octave (1 - 2|x|) to make sharp crests like mountain ridges."""
    x = np.linspace(0.0, 1.0, n, dtype=np.float32)
    out = np.zeros(n, np.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        k = max(2, int(round(cells * 2 ** octave)))
        knots = rng.uniform(-1, 1, k + 1).astype(np.float32)
        layer = np.interp(x, np.linspace(0, 1, k + 1), knots).astype(np.float32)
        if ridged:
            layer = 1.0 - 2.0 * np.abs(layer)
        out += amplitude * layer
        total += amplitude
        amplitude *= 0.5
    return out / total


class _Canvas:
    """RGB float image (H, W, 3) and label map (H, W), painted back to front, band by band."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.rgb = np.zeros((h, w, 3), np.float32)
        self.labels = np.zeros((h, w), np.uint8)
        self.rows = np.arange(h, dtype=np.float32)[:, None]  # (H, 1)
        self.cols = np.arange(w, dtype=np.float32)[None, :]  # (1, W)

    def paint(self, r0: int, mask: np.ndarray, colour: np.ndarray, label: int) -> None:
        """Paint rows r0:r0+len(mask) where mask (rows, W) is true; colour broadcasts to (rows, W, 3)."""
        r1 = r0 + mask.shape[0]
        np.copyto(self.rgb[r0:r1], colour, where=mask[..., None])
        self.labels[r0:r1][mask] = label


def _sky(c: _Canvas, rng, h0: int) -> None:
    """Rows [0, h0): gradient, maybe a sun, clouds (their density also drives the cloud label)."""
    h, w = c.h, c.w
    rows = c.rows[:h0]
    zenith, low = SKY_PALETTES[rng.integers(len(SKY_PALETTES))] * rng.uniform(0.9, 1.08)
    t = (rows / max(h0, 1)) ** 0.8  # (h0, 1)
    sky = (zenith * (1 - t[..., None]) + low * t[..., None]) * np.ones((1, w, 1), np.float32)  # (h0, W, 3)
    if rng.random() < 0.45:  # sun: a bright disc with a soft glow
        sy, sx = rng.uniform(0.15, 0.7) * h0, rng.uniform(0.1, 0.9) * w
        d = np.sqrt((rows - sy) ** 2 + (c.cols - sx) ** 2) / h
        glow = np.clip(1.0 - d / 0.25, 0, 1) ** 2 * 0.35 + (d < 0.035) * 0.8
        sky += glow[..., None] * np.array([1.0, 0.92, 0.7], np.float32)
    cover = rng.uniform(0.0, 0.45)  # higher = fewer clouds
    noise = fractal2d(rng, h0, w, cells=rng.uniform(2.0, 3.5) * h0 / h, octaves=4, stretch=2.5)
    fade = np.clip((h0 - rows) / (0.25 * h0 + 1), 0, 1)  # clouds thin out towards the horizon
    density = (np.clip((noise - cover) / 0.3, 0, 1) ** 1.5 * fade)[..., None]
    shade = np.clip(0.85 + 0.6 * (noise - cover), 0.6, 1.1)[..., None]
    c.rgb[:h0] = sky * (1 - density) + np.array([0.97, 0.97, 0.98], np.float32) * shade * density
    c.labels[:h0] = np.where(density[..., 0] > 0.5, CLOUD, SKY)


def _mountains(c: _Canvas, rng, h0: int) -> None:
    """One to three ranges, far (hazy) to near, with lit relief and snow above a snow line."""
    h, w = c.h, c.w
    haze_colour = c.rgb[max(0, h0 - 1)].mean(axis=0)
    layers = int(rng.integers(1, 4))
    crests, peaks = [], []
    for k in range(layers):
        near = (k + 1) / layers  # 1 for the nearest range
        peak = min(h0 - 1.0, rng.uniform(0.15, 0.45) * h * (0.55 + 0.45 * near))
        crest = fractal1d(rng, w, cells=rng.uniform(1.5, 4.0) * w / h, octaves=6, ridged=True)
        # a slow envelope groups the peaks into massifs with lower passes between them
        massif = 0.45 + 0.55 * (fractal1d(rng, w, cells=rng.uniform(0.6, 1.2) * w / h, octaves=2) + 1) / 2
        crests.append(crest)
        peaks.append((h0 - peak * massif * (0.35 + 0.65 * (crest + 1) / 2), peak))  # (W,) crest row per column
    r0 = int(max(0, min(float(top.min()) for top, _ in peaks)))
    rows = c.rows[r0:h0]
    # Noise twice as wide as the image: each range reads its own window (no wrap-around seam).
    relief = fractal2d(rng, h0 - r0, 2 * w, cells=3.0 * (h0 - r0) / h, octaves=5)
    jitter = 0.04 * h * fractal2d(rng, h0 - r0, 2 * w, cells=5.0 * (h0 - r0) / h, octaves=3)
    snow_fraction = rng.uniform(0.55, 0.85)  # snow where the mountain is this high above the horizon
    for k, (crest, (top, peak)) in enumerate(zip(crests, peaks)):
        near = (k + 1) / layers
        shift = int(rng.integers(w))
        rel = relief[:, shift:shift + w]
        mask = rows >= top[None, :]  # (rows, W)
        base = MOUNTAIN_COLOURS[rng.integers(len(MOUNTAIN_COLOURS))]
        haze = 0.65 * (1 - near) + 0.1  # far ranges fade into the horizon sky
        # Terrain shading: a fractal height field lit from the left through its horizontal slope,
        # so faces turn light or dark (a per-column term would paint vertical stripes).
        below = np.clip((rows - top[None, :]) / max(peak, 1), 0, 1)
        slope = np.gradient(rel * (h / 10), axis=1)
        light = np.clip(0.95 - 0.6 * slope - 0.25 * below, 0.45, 1.35)[..., None]
        c.paint(r0, mask, (base * light) * (1 - haze) + haze_colour * haze, MOUNTAIN)
        snowy = mask & (rows + jitter[:, shift:shift + w] < h0 - snow_fraction * peak)
        snow = np.array([0.93, 0.94, 0.97], np.float32) * np.clip(light, 0.75, 1.1)
        c.paint(r0, snowy, snow * (1 - haze) + haze_colour * haze, SNOW)


def _ground(c: _Canvas, rng, h0: int) -> np.ndarray:
    """Rows [h0, H): a lake mirroring what is above the horizon, and/or a meadow, maybe a far tree
    line. Returns the row where grass starts, per column (W,)."""
    h, w = c.h, c.w
    rows = c.rows[h0:]
    depth = (rows - h0) / max(h - h0, 1)  # (rows, 1): 0 at the horizon, 1 at the bottom
    grass = GRASS_COLOURS[rng.integers(len(GRASS_COLOURS))] * rng.uniform(0.85, 1.1)
    texture = fractal2d(rng, h - h0, w, cells=8.0 * (h - h0) / h, octaves=4)[..., None]
    c.rgb[h0:] = grass * (0.85 + 0.3 * texture) * (1.0 - 0.25 * depth[..., None])
    c.labels[h0:] = GRASS
    shore = np.full(w, float(h0), np.float32)
    if rng.random() < 0.65:
        shore = h0 + rng.uniform(0.15, 0.55) * (h - h0) \
            + 0.06 * (h - h0) * fractal1d(rng, w, cells=2.0 * w / h, octaves=4)
        water = rows < shore[None, :]
        mirror = np.clip(2 * h0 - 1 - rows, 0, h0 - 1).astype(np.int64)  # (rows, 1) mirrored at the horizon
        ripple = (0.004 * w * np.sin(rows * 0.9 + rng.uniform(0, 6.3)) * (0.3 + depth)).astype(np.int64)
        cols = np.clip(c.cols.astype(np.int64) + ripple, 0, w - 1)
        reflection = c.rgb[mirror, cols]  # (rows, W, 3)
        streaks = 0.06 * fractal2d(rng, h - h0, w, cells=10.0 * (h - h0) / h, octaves=2, stretch=6.0)[..., None]
        c.paint(h0, water, 0.62 * reflection + 0.38 * np.array([0.10, 0.22, 0.35], np.float32) + streaks, WATER)
    if rng.random() < 0.5:  # a distant tree line along the shore, standing on the grass edge
        band = 0.025 * h * (1.2 + fractal1d(rng, w, cells=12.0 * w / h, octaves=3))
        r0 = int(max(0, float((shore - band).min())))
        sub = c.rows[r0:h]
        line = (sub < shore[None, :]) & (sub >= shore[None, :] - band[None, :]) & (c.labels[r0:h] != WATER)
        dark = np.array([0.10, 0.22, 0.12], np.float32)
        c.paint(r0, line, dark, TREE)
    return shore


def _objects(c: _Canvas, rng, h0: int, shore: np.ndarray) -> None:
    """Conifers and rocks on the grass, drawn far to near; size grows with distance below horizon."""
    h, w = c.h, c.w
    n_trees = int(rng.integers(0, 12)) if rng.random() < 0.75 else 0
    n_rocks = int(rng.integers(0, 6))
    items = []
    for kind, count in (("tree", n_trees), ("rock", n_rocks)):
        for _ in range(count):
            x = rng.uniform(0, w)
            ground = float(shore[int(min(w - 1, x))])
            if ground >= h - 2:
                continue
            items.append((rng.uniform(ground + 1, h + 0.15 * h), x, kind))  # bottoms may leave the frame
    for y, x, kind in sorted(items):
        scale = (y - h0) / max(h - h0, 1)  # perspective: 0 at the horizon, 1 at the bottom
        if kind == "tree":
            height = h * (0.05 + 0.32 * scale) * rng.uniform(0.7, 1.3)
            half = height * rng.uniform(0.18, 0.26)
            top = y - height
            box = (top, y + 1, x - half, x + half + 1)  # (top, bottom, left, right), unclipped
        else:
            rx = h * (0.02 + 0.08 * scale) * rng.uniform(0.6, 1.5)
            ry = rx * rng.uniform(0.5, 0.8)
            box = (y - ry, y + 0.3 * ry + 1, x - rx, x + rx + 1)
        y0, y1, x0, x1 = int(max(0, box[0])), int(min(h, box[1])), int(max(0, box[2])), int(min(w, box[3]))
        if y1 <= y0 or x1 <= x0:
            continue
        rows, cols = c.rows[y0:y1], c.cols[:, x0:x1]
        region, labels = c.rgb[y0:y1, x0:x1], c.labels[y0:y1, x0:x1]
        if kind == "tree":
            t = (rows - top) / height  # 0 at the tip, 1 at the base
            tiers = 0.7 + 0.3 * ((t * 5) % 1.0)  # branch tiers widen downwards in steps
            crown = (np.abs(cols - x) <= half * t * tiers) & (t < 0.9)
            trunk = (np.abs(cols - x) <= max(0.6, 0.12 * half)) & (t >= 0.85)
            green = np.array([0.08, 0.25, 0.10], np.float32) * rng.uniform(0.8, 1.3)
            side = np.clip(1.0 + 0.35 * (x - cols) / max(half, 1), 0.7, 1.35)[..., None]  # lit from the left
            np.copyto(region, green * side, where=crown[..., None])
            np.copyto(region, np.array([0.25, 0.16, 0.08], np.float32), where=trunk[..., None])
            labels[crown | trunk] = TREE
        else:
            inside = ((cols - x) / rx) ** 2 + ((rows - y) / ry) ** 2 <= 1.0
            light = np.clip(1.15 - 0.5 * ((rows - y + ry) / (2 * ry)) - 0.25 * (cols - x) / rx, 0.45, 1.3)
            np.copyto(region, ROCK_COLOUR * rng.uniform(0.8, 1.2) * light[..., None], where=inside[..., None])
            labels[inside] = ROCK


def render_landscape(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (H, W, 3) uint8 RGB and (H, W) uint8 labels (see CLASSES)."""
    c = _Canvas(height, width)
    h0 = int(np.clip(round(rng.uniform(0.48, 0.68) * height), 2, height - 2))  # horizon row
    _sky(c, rng, h0)
    _mountains(c, rng, h0)
    shore = _ground(c, rng, h0)
    _objects(c, rng, h0, shore)
    rgb = np.clip(c.rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return rgb, c.labels


class ProceduralLandscapes(Dataset):
    """`length` landscapes of `height` x `width` (default `size` x `size`).

    Example: {"image": (H, W, 3) float32 in [-1, 1], "segmentation": (H, W, 8) float32 one-hot,
              "file_path_": "landscape://<split>/<seed>/<index>"}.

    `crop` (pixels): each example is a crop x crop window of the rendered scene, at a position drawn
    from the example's own seed (deterministic). Models trained on windows of large scenes see objects
    at the scale they have in large outputs (the sliding window samples such scenes window by window).
    """

    n_labels = N_LABELS
    classes = CLASSES

    def __init__(self, size: int = 256, length: int = 1000, seed: int = 0, height: int | None = None,
                 width: int | None = None, split: str = "train", crop: int | None = None):
        if split not in SPLITS:
            raise DataError(f"ProceduralLandscapes: split must be one of {sorted(SPLITS)}, got {split!r}")
        self.height = int(height or size)
        self.width = int(width or size)
        if self.height < 8 or self.width < 8 or length < 1:
            raise DataError(f"ProceduralLandscapes: need height, width >= 8 and length >= 1, "
                            f"got {self.height}x{self.width}, length {length}")
        if crop is not None and not 8 <= crop <= min(self.height, self.width):
            raise DataError(f"ProceduralLandscapes: crop must be in 8..{min(self.height, self.width)} "
                            f"(the scene's smaller side), got {crop}")
        self.length, self.seed, self.split, self.crop = int(length), int(seed), split, crop

    def __len__(self) -> int:
        return self.length

    def render(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 and (H, W) uint8 labels of sample i."""
        if not 0 <= i < self.length:
            raise IndexError(f"ProceduralLandscapes: index {i} out of range for {self.length}")
        rng = np.random.default_rng([self.seed, SPLITS[self.split], i])
        rgb, labels = render_landscape(rng, self.height, self.width)
        if self.crop is None:
            return rgb, labels
        top, left = int(rng.integers(self.height - self.crop + 1)), int(rng.integers(self.width - self.crop + 1))
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        return rgb[window], labels[window]

    def __getitem__(self, i: int) -> dict:
        rgb, labels = self.render(i)
        return {
            "image": (rgb.astype(np.float32) / 127.5 - 1.0).astype(np.float32),
            "segmentation": np.eye(N_LABELS, dtype=np.float32)[labels],
            "file_path_": f"landscape://{self.split}/{self.seed}/{i}",
        }


class LandscapesTrain(ProceduralLandscapes):
    def __init__(self, size: int = 256, length: int = 1000, seed: int = 0, height: int | None = None,
                 width: int | None = None, crop: int | None = None):
        super().__init__(size=size, length=length, seed=seed, height=height, width=width, split="train", crop=crop)


class LandscapesValidation(ProceduralLandscapes):
    def __init__(self, size: int = 256, length: int = 100, seed: int = 0, height: int | None = None,
                 width: int | None = None, crop: int | None = None):
        super().__init__(size=size, length=length, seed=seed, height=height, width=width, split="validation",
                         crop=crop)


def colorize(seg: torch.Tensor) -> torch.Tensor:
    """One-hot maps (B, 8, H, W) -> RGB (B, 3, H, W) in [-1, 1] with the class palette."""
    return torch.as_tensor(PALETTE)[seg.argmax(1)].permute(0, 3, 1, 2)
