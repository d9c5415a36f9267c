"""Plot validation PSNR and codes in use against steps from runs' CSV logs, as one PNG (matplotlib).

    python benchmarks/plot_quality.py logs/<run A> [logs/<run B> ...] [--out quality.png] [--labels A B] [--at 1500]

Reads every csv/*/metrics.csv of each run folder (a resumed run has several), takes the rows with
val/psnr and val/codes_in_use (logged by taming.training.quality.ReconstructionQuality), draws two
panels (PSNR in dB, codes in use) with one line per run (900x640 px), and prints the numbers as a table.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

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


def panel(ax, title: str, series: list[tuple[str, list[tuple[int, float]]]]) -> None:
    """One metric against steps on `ax`, one line with markers per run."""
    ax.set_title(title, loc="left", fontsize=10)
    if not any(points for _, points in series):
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    for label, points in series:
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o", markersize=3, linewidth=1.5, label=label)
    ax.set_xlabel("step")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")


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
    fig, axes = plt.subplots(len(METRICS), 1, figsize=(9, 6.4), dpi=100)
    for ax, (metric, title) in zip(axes, METRICS):
        panel(ax, f"{title} vs step", [(label, c[metric]) for label, c in zip(labels, curves)])
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    plt.close(fig)
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
