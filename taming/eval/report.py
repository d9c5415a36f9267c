"""The demo's report page: training curves drawn with matplotlib from the runs' CSV logs, and one
self-contained HTML page (images linked beside the numbers)."""
from __future__ import annotations

import csv
import html
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

# (run name, CSV column, label) of the curves worth a look; missing columns are left out
CURVES = (("vqgan", "train/rec_loss_step", "VQGAN reconstruction loss (L1)"),
          ("vqgan", "train/codebook/codes_used", "VQGAN codes in use (batch)"),
          ("segvq", "train/rec_loss_step", "segmentation VQ loss (BCE)"),
          ("transformer", "train/loss_step", "GPT training loss (nats/code)"),
          ("transformer", "val/loss_epoch", "GPT validation loss (nats/code)"))


def read_metrics(run_dir: str | Path) -> list[dict[str, str]]:
    """Rows of the run's CSV log (Lightning's CSVLogger: csv/<version>/metrics.csv)."""
    files = sorted(Path(run_dir).glob("csv/*/metrics.csv"))
    if not files:
        return []
    with open(files[-1], newline="") as f:
        return list(csv.DictReader(f))


def column(rows: Sequence[Mapping[str, str]], key: str) -> tuple[list[float], list[float]]:
    points = [(float(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "") and r.get("step")]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(runs: Mapping[str, str | Path], path: Path) -> Path:
    """One panel per curve of CURVES found in the runs' logs, saved as a PNG."""
    found = []
    for name, key, label in CURVES:
        if name in runs:
            steps, values = column(read_metrics(runs[name]), key)
            if steps:
                found.append((steps, values, label))
    fig, axes = plt.subplots(1, max(1, len(found)), figsize=(3.6 * max(1, len(found)), 3.0), squeeze=False)
    for ax, (steps, values, label) in zip(axes[0], found):
        ax.plot(steps, values, lw=1.2)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(rows: Sequence[Sequence[Any]]) -> str:
    head, *body = rows
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    lines = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in body)
    return f"<table><tr>{cells}</tr>{lines}</table>"


def write_index(out: Path, title: str, numbers: Sequence[Sequence[Any]],
                figures: Sequence[tuple[str, str | Path]]) -> Path:
    """out/index.html: the numbers as a table, then each (caption, image path) with paths relative to out."""
    parts = [f"<h1>{html.escape(title)}</h1>", _table(numbers)]
    for caption, image in figures:
        rel = Path(image).resolve().relative_to(out.resolve())
        parts.append(f"<figure><img src='{html.escape(str(rel))}'><figcaption>{html.escape(caption)}"
                     "</figcaption></figure>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:left}img{image-rendering:pixelated;max-width:100%}figure{margin:1.5em 0}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    path = out / "index.html"
    path.write_text(page)
    return path
