"""A layout drawn as an image: each object's box (objects_bbox) or centre dot (objects_center_points)
in a repeating palette with its class name, the crop box in dark grey, on white.

The font is DejaVu Sans from matplotlib's own data folder (matplotlib is a dependency), so drawing
never depends on fonts installed on the machine; PIL's built-in bitmap font is the last resort.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..helper_types import Annotation
from .boxes import to_pixels

Builder = Any  # an ObjectsCenterPointsConditionalBuilder (which imports this module to plot itself)
# tab10, the palette the original cycles through
PALETTE = [(30, 118, 179), (255, 126, 13), (43, 159, 43), (213, 38, 39), (147, 102, 188),
           (139, 85, 74), (226, 118, 193), (126, 126, 126), (187, 188, 33), (22, 189, 206)]
BLACK, WHITE, CROP_GREY = (0, 0, 0), (255, 255, 255), (63, 63, 63)


def font_path() -> Path:
    """matplotlib's bundled DejaVuSans.ttf."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


@functools.lru_cache(maxsize=8)
def load_font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.truetype(str(font_path()), size=size)
    except (ImportError, OSError):
        return ImageFont.load_default()


def default_font_size(figure_size: tuple[int, int]) -> int:
    side = max(figure_size)
    return 15 if side >= 512 else 12 if side >= 256 else 10


def dot_radius(figure_size: tuple[int, int]) -> int:
    side = max(figure_size)
    return 4 if side >= 512 else 3 if side >= 256 else 2


def flags_text(annotation: Annotation) -> str:
    """'(g,o)' for a group that is occluded, ... ; '' without flags."""
    names = [name[3] for name in ("is_group_of", "is_occluded", "is_depiction", "is_inside")
             if getattr(annotation, name)]
    return "(" + ",".join(names) + ")" if names else ""


def label(builder: Builder, representation: int,
          label_for_category_no: Callable[[int], str]) -> str:
    annotation = builder.representation_to_annotation(representation)
    return f"{label_for_category_no(annotation.category_no)} {flags_text(annotation)}".rstrip()


def draw_layout(builder: Builder, conditional: torch.Tensor,
                label_for_category_no: Callable[[int], str], figure_size: tuple[int, int], line_width: int = 3,
                font_size: Optional[int] = None) -> torch.Tensor:
    """Tokens (embedding_dim,) -> (3, H, W) float in [-1, 1]; figure_size is (W, H)."""
    width, height = figure_size
    picture = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(picture)
    font = load_font(font_size or default_font_size(figure_size))
    objects, crop = builder.inverse_build(conditional)
    for k, (representation, where) in enumerate(objects):
        color = PALETTE[k % len(PALETTE)]
        text = label(builder, representation, label_for_category_no)
        if len(where) == 4:  # a box (x0, y0, w, h)
            x0, y0, x1, y1 = to_pixels(where, width, height)
            draw.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=color, width=line_width)
            draw.text((x0 + line_width, y0 + line_width), text, anchor="la", fill=BLACK, font=font)
        else:  # a centre (x, y)
            x, y, r = where[0] * width, where[1] * height, dot_radius(figure_size)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=color)
            draw.text((x, y), text, anchor="md", fill=BLACK, font=font)
    if crop is not None:
        x0, y0, x1, y1 = to_pixels(crop, width, height)
        draw.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=CROP_GREY, width=line_width)
    pixels = torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)  # (3, H, W) uint8
    return pixels.float() / 127.5 - 1.0
