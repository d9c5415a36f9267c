#!/usr/bin/env bash
# Prepares .gpu/ (ignored by git) for benchmarks/gpu_check.sh on a lent GPU machine, which has CPython
# 3.12 with torch (CUDA), Lightning, einops, numpy, PyYAML, pytest... but no package registry and no
# ../shared: only the working tree and the carried paths travel, 64 MiB in all.
#   .gpu/wheels/  what the check imports and that machine lacks (the project's dependencies, the check's
#                 tests, the original's side), as wheels for CPython 3.12 manylinux x86_64, in the versions
#                 of the environment that tested them here (.venv, or $PYTHON); an sdist-only package
#                 is built into a wheel here (pure Python only)
#   .gpu/shared/  the part of ../shared the check reads: compat configs and keys, the two transformer
#                 fixtures, and the original code + harness for its side of the benchmark
# Prints what travels (MiB of 64) and the device call. Run it here, then (device tool `run`):
#   command "bash benchmarks/gpu_check.sh", carry [".gpu"], timeout_s 540
# Re-running replaces .gpu/. A dependency that is neither carried nor on that machine fails here, by name.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SHARED=${TAMING_SHARED:-../shared}
OUT=.gpu
[ -x "$PY" ] || { echo "gpu_wheels: $PY not found: run ./run.sh test once first (it creates .venv)" >&2; exit 1; }
[ -d "$SHARED/compat" ] || { echo "gpu_wheels: no reference data at $SHARED" >&2; exit 1; }
rm -rf "$OUT"
mkdir -p "$OUT/wheels" "$OUT/shared/compat/fixtures" "$OUT/shared/oracle"

# ---- wheels ------------------------------------------------------------------------------------
# The 'cuda' image's packages that matter here (its package list, read 2026-11-17): what is on it is
# not carried, so the machine's torch, Lightning and numpy stay the ones in use.
PRESENT="torch lightning pytorch-lightning lightning-utilities torchmetrics einops numpy pyyaml pillow
matplotlib tqdm safetensors fsspec tensorboard scipy pytest hypothesis requests packaging typing-extensions
filelock jinja2 networkx sympy triton setuptools protobuf aiohttp"
# Besides the project's dependencies (pyproject.toml): the check's tests (pytest, PyYAML) and the
# original's side (benchmarks/original_side.py imports omegaconf, pytorch_lightning, einops, requests,
# tqdm through the original code; its torchvision is the harness's stub).
ALSO="pytest pyyaml pytorch-lightning einops requests tqdm"
"$PY" - "$OUT/wheels" "$PRESENT" "$ALSO" <<'EOF'
import importlib.metadata as md, re, subprocess, sys, tomllib, zipfile
from pathlib import Path
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon

dest, present, also = Path(sys.argv[1]), {canon(n) for n in sys.argv[2].split()}, sys.argv[3].split()
env = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3",
       "sys_platform": "linux", "platform_machine": "x86_64", "implementation_name": "cpython"}
PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none",
            *[a for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")
              for a in ("--platform", p)]]
pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]


def needs(reqs):
    for r in map(Requirement, reqs):
        if r.marker is None or r.marker.evaluate({**env, "extra": ""}):
            yield canon(r.name)


def fetch(name: str) -> Path:
    pin = f"{name}=={md.version(name)}"  # the version tested here
    before = set(dest.iterdir())
    got = subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", *PLATFORM, "-d", dest, pin],
                         capture_output=True, text=True)
    if got.returncode != 0:  # sdist only (antlr4-python3-runtime, say): a wheel built here, pure Python only
        subprocess.run([*pip, "wheel", "--no-deps", "--no-binary=:all:", "-w", dest, pin], check=True)
    wheel, = set(dest.iterdir()) - before
    tags = wheel.name.split("-")[-3:]
    if not (tags[1] == "none" and tags[2].startswith("any") or "cp312" in tags[0]):
        sys.exit(f"gpu_wheels: {wheel.name} does not install on CPython 3.12")
    return wheel


project = tomllib.loads(Path("pyproject.toml").read_text())["project"]["dependencies"]
todo, seen, carried = [*needs(project), *map(canon, also)], set(), []
while todo:
    name = todo.pop()
    if name in seen or name in present:
        continue
    seen.add(name)
    try:
        md.version(name)
    except md.PackageNotFoundError:
        sys.exit(f"gpu_wheels: {name} is neither on the GPU machine (PRESENT) nor in {sys.executable}'s environment")
    wheel = fetch(name)
    carried.append(wheel.name)
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    todo += needs(re.findall(r"^Requires-Dist: (.+)$", meta, re.M))
print("gpu_wheels: carried", " ".join(sorted(carried)))
EOF

# ---- the part of ../shared the check reads -------------------------------------------------------
cp -r --no-preserve=mode "$SHARED/compat/configs" "$SHARED/compat/keys" "$OUT/shared/compat/"
cp -r --no-preserve=mode "$SHARED/compat/fixtures/transformer_seg" "$SHARED/compat/fixtures/transformer_uncond" \
  "$OUT/shared/compat/fixtures/"
cp -r --no-preserve=mode "$SHARED/oracle/harness" "$SHARED/oracle/taming-transformers" "$OUT/shared/oracle/"
find "$OUT" -name __pycache__ -prune -exec rm -rf {} +

# ---- what travels ------------------------------------------------------------------------------
mib() { awk '{s += $1} END {printf "%.1f", s / 1048576}'; }
tree=$(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | mib)
wheels=$(find "$OUT/wheels" -type f -printf '%s\n' | mib)
shared=$(find "$OUT/shared" -type f -printf '%s\n' | mib)
total=$(printf '%s\n' "$tree" "$wheels" "$shared" | awk '{s += $1} END {printf "%.1f", s}')
echo "gpu_wheels: .gpu/wheels $wheels MiB + .gpu/shared $shared MiB + working tree $tree MiB = $total MiB of 64"
awk -v t="$total" 'BEGIN {exit !(t < 56)}' || { echo "gpu_wheels: over 56 MiB (64 with a margin): too much travels" >&2; exit 1; }
echo 'gpu_wheels: now the device tool: run(command="bash benchmarks/gpu_check.sh", carry=[".gpu"], timeout_s=540)'
