"""Float flags checked as they are parsed: finite, and inside the range that means something
(`--temperature nan` is refused before anything loads and never reaches a settings.json)."""
from __future__ import annotations

import argparse
import math
from typing import Callable


def number_in(low: float | None = None, high: float | None = None, low_open: bool = False) -> Callable[[str], float]:
    """An argparse `type`: a finite float >= low (> low when low_open) and <= high."""
    parts = [f"{'>' if low_open else '>='} {low:g}" if low is not None else "", f"<= {high:g}" if high is not None else ""]
    wanted = "a finite number" + (" " + " and ".join(p for p in parts if p) if any(parts) else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        below = low is not None and (value <= low if low_open else value < low)
        if not math.isfinite(value) or below or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    return parse


POSITIVE = number_in(0, low_open=True)  # temperatures, scales of step counts
PROBABILITY = number_in(0, 1, low_open=True)  # top-p, the fraction of candidates kept
NON_NEGATIVE = number_in(0)  # classifier-free guidance scale
