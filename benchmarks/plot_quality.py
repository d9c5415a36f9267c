"""Plot validation PSNR and codes in use against steps from runs' CSV logs, as one PNG (PIL only).

    python benchmarks/plot_quality.py logs/<run A> [logs/<run B> ...] [--out quality.png] [--labels A B] [--at 1500]

Reads every csv/*/metrics.csv of each run folder (a resumed run has several), takes the rows with
val/psnr and val/codes_in_use (logged by taming.training.quality.ReconstructionQuality), draws two
panels (PSNR in dB, codes in use) with one line per run, and prints the numbers as a table.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
           (23, 190, 207), (127, 127, 127), (188, 189, 34), (227, 119, 194)]
METRICS = (("val/psnr", "val PSNR (dB)"), ("val/codes_in_use", "codes in use"))


def read_curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value), ...]} sorted by step, later files winning on equal steps."""
    files = sorted(run.glob("csv/*/metrics.csv")) + sorted(run.glob("csv/metrics.csv"))
    if not files:
        raise SystemExit(f"no csv/*/metrics.csv under {run}")
    curves: dict[str, dict[int, float]] = {m: {} for m, _ in METRICS}
    for f in files:
        with open(f, newline="") as fh:
            for row in csv.DictReader(fh):
                # val/global_step (when logged) is the batch count at validation; "step" lags by one
                step = int(float(row.get("val/global_step") or row["step"]))
                for metric in curves:
                    if row.get(metric):
                        curves[metric][step] = float(row[metric])
    return {m: sorted(v.items()) for m, v in curves.items()}


def panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str,
          series: list[tuple[str, list[tuple[int, float]]]]) -> None:
    x0, y0, x1, y1 = box
    points = [p for _, s in series for p in s]
    if not points:
        draw.text((x0 + 10, y0 + 10), f"{title}: no data", fill="black")
        return
    smax = max(p[0] for p in points) or 1
    vmin, vmax = min(p[1] for p in points), max(p[1] for p in points)
    pad = (vmax - vmin) * 0.1 or 1.0
    vmin, vmax = vmin - pad, vmax + pad
    left, bottom = x0 + 60, y1 - 30
    draw.rectangle((left, y0 + 20, x1 - 10, bottom), outline="black")
    draw.text((left, y0 + 2), title, fill="black")

    def xy(step: float, value: float) -> tuple[float, float]:
        return (left + (x1 - 10 - left) * step / smax, bottom - (bottom - y0 - 20) * (value - vmin) / (vmax - vmin))

    for k in range(5):  # y ticks
        v = vmin + (vmax - vmin) * k / 4
        _, y = xy(0, v)
        draw.line((left - 4, y, left, y), fill="black")
        draw.text((x0 + 2, y - 6), f"{v:.{2 if vmax - vmin < 2 else 1}f}", fill="black")
    for k in range(5):  # x ticks
        s = smax * k / 4
        x, _ = xy(s, vmin)
        draw.line((x, bottom, x, bottom + 4), fill="black")
        draw.text((x - 12, bottom + 8), f"{s:.0f}" if smax >= 20 else f"{s:.1f}", fill="black")
    for i, (label, s) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        pts = [xy(*p) for p in s]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for x, y in pts:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        draw.text((left + 10, y0 + 24 + 12 * i), label, fill=colour)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run folders (logs/<timestamp>_<name>)")
    p.add_argument("--labels", nargs="*", default=None)
    p.add_argument("--out", type=Path, default=Path("quality.png"))
    p.add_argument("--at", type=int, default=None,
                   help="also print each run's values at this step and their mean, min and max (seeds of one config)")
    args = p.parse_args()
    labels = args.labels or [r.name for r in args.runs]
    curves = [read_curves(r) for r in args.runs]
    width, height = 900, 640
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for k, (metric, title) in enumerate(METRICS):
        panel(draw, (0, k * height // 2, width, (k + 1) * height // 2), f"{title} vs step",
              [(label, c[metric]) for label, c in zip(labels, curves)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out)
    for label, c in zip(labels, curves):
        print(f"\n{label}\n{'step':>6} {'PSNR dB':>8} {'codes':>6}")
        codes = dict(c["val/codes_in_use"])
        for step, psnr in c["val/psnr"]:
            print(f"{step:>6} {psnr:>8.2f} {int(codes.get(step, 0)):>6}")
    if args.at is not None:
        summary(labels, curves, args.at)
    print(f"\nplot written to {args.out}")


def summary(labels: list[str], curves: list[dict[str, list[tuple[int, float]]]], step: int) -> None:
    """Each run's PSNR and codes at `step`, then their mean, min and max."""
    rows = [(label, dict(c["val/psnr"]).get(step), dict(c["val/codes_in_use"]).get(step))
            for label, c in zip(labels, curves)]
    missing = [label for label, psnr, _ in rows if psnr is None]
    if missing:
        raise SystemExit(f"no validation at step {step} in: {', '.join(missing)}")
    print(f"\nat step {step}\n{'run':<40} {'PSNR dB':>8} {'codes':>6}")
    for label, psnr, codes in rows:
        print(f"{label:<40} {psnr:>8.2f} {int(codes or 0):>6}")
    psnrs = [psnr for _, psnr, _ in rows]
    print(f"{'mean (min, max)':<40} {sum(psnrs) / len(psnrs):>8.2f} ({min(psnrs):.2f}, {max(psnrs):.2f})")


if __name__ == "__main__":
    main()
