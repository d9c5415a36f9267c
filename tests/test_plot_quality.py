"""benchmarks/plot_quality.py: CSV logs of runs -> a matplotlib PNG and the printed table."""
import subprocess
import sys

import numpy as np
from PIL import Image

from helpers import ROOT


def _run(root, name, rows):
    folder = root / name / "csv" / "version_0"
    folder.mkdir(parents=True)
    lines = ["step,val/psnr,val/codes_in_use,val/global_step,train/loss"]
    lines += [f"{s - 1},{p},{c},{s}," for s, p, c in rows] + ["5,,,,0.3"]  # a training row has no val values
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    return root / name


def test_plot_and_table(tmp_path):
    a = _run(tmp_path, "a", [(100, 18.5, 40), (200, 21.25, 55)])
    b = _run(tmp_path, "b", [(100, 19.0, 38), (200, 20.75, 60)])
    out = tmp_path / "plots" / "q.png"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "plot_quality.py"), str(a), str(b),
                           "--labels", "A", "B", "--at", "200", "--out", str(out)],
                          capture_output=True, text=True, check=True)
    assert "   200    21.25     55" in done.stdout and "   200    20.75     60" in done.stdout
    assert "21.00 (20.75, 21.25)" in done.stdout  # mean (min, max) at step 200
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (640, 900, 3)
    # two coloured lines were drawn (matplotlib's first two colours, C0 blue and C1 orange)
    colours = {tuple(p) for p in image.reshape(-1, 3)[::7]}
    assert any(r < 60 and 100 < g < 140 and b > 160 for r, g, b in colours)
    assert any(r > 230 and 110 < g < 150 and b < 40 for r, g, b in colours)
