#!/usr/bin/env bash
# GPU check (issues 12 and 22): one command on a lent GPU machine, under 8 minutes with its start-up.
#
# How to run it. A GPU machine is lent rarely, about 15 minutes in all: it must work the first time.
#   1. here:  bash benchmarks/gpu_wheels.sh
#        fills .gpu/ (ignored by git): the wheels that machine lacks (omegaconf, webdataset, braceexpand:
#        it has Python 3.12, torch 2.11 CUDA, Lightning, einops, numpy, pytest, and no registry) and the
#        part of ../shared the check reads (../shared does not travel); prints the MiB that travel (of 64)
#   2. here:  bash benchmarks/gpu_check.sh --dry-run     the same steps on the CPU, smoke-sized
#   3. the device tool:  run(command="bash benchmarks/gpu_check.sh", carry=[".gpu"], timeout_s=540)
#        the log also comes back as $OUT/gpu_check.log; then give_back.
#
# Steps, each under its own timeout, 45 + 150 + 240 (+ 45 with two GPUs) s, so at most 7.5 minutes
# (8 with the hook); a failed step does not stop the later ones, and the exit status is the number of
# steps that failed:
#   0. packages: .gpu/wheels installed by pip --no-index --no-deps --target into a fresh folder that goes
#      on PYTHONPATH (a venv would not see the machine's torch: its python3 is itself a venv's), and
#      TAMING_SHARED=.gpu/shared when that exists (the tests and benchmarks read reference data there);
#   1. the device-parametrized tests (CUDA and CPU) and the sampling, GPT and hardware tests;
#   2. ours against the original on the same GPU: encode, decode (faceshq VQGAN, 256 px, batch 1),
#      cached sampling at batch 4 and throughput at 64 (26.5M GPT, 256 + 256 codes, top-k 100), 50
#      training steps of each stage; one table (benchmarks/bench_vs_original.py). The original runs
#      from $TAMING_ORIGINAL_VENV, else ../oracle-venv, else this same interpreter when it has no `taming`
#      of its own (ours reaches only our workers, through PYTHONPATH; the original's harness puts its
#      code first); where none can, the table says "not run";
#   3. HOOK for issue 23 (2-process sampling): with >= 2 GPUs, the tests marked `multigpu` in
#      tests/test_*.py (none yet: then it says so and passes).
#
#   benchmarks/gpu_check.sh            on a machine with a GPU
#   benchmarks/gpu_check.sh --dry-run  on the CPU with tiny workloads: checks that every step would run
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -n "${OUT:-}" ] && [ -d "$OUT" ] && [ -z "${GPU_CHECK_LOG:-}" ]; then  # the device tool brings $OUT back
  GPU_CHECK_LOG=1 bash "$0" "$@" 2>&1 | tee "$OUT/gpu_check.log"
  exit "${PIPESTATUS[0]}"
fi
PY=${PYTHON:-}
[ -z "$PY" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
[ -z "$PY" ] && PY=$(command -v python3 || command -v python)
case "$PY" in /*) ;; *) PY=$PWD/$PY ;; esac  # as given, not resolved: a venv's python is a link
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
export PYTHONUNBUFFERED=1
SITE=$(mktemp -d "${TMPDIR:-/tmp}/taming-gpu-check-XXXXXX")  # the carried packages, for this run only
trap 'rm -rf "$SITE"' EXIT
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
[ -d .gpu/shared ] && export TAMING_SHARED=$PWD/.gpu/shared
failed=0
step() {  # step NAME TIMEOUT_S COMMAND...: runs it, reports its time and status, counts a failure
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  echo "== $name (timeout ${limit} s)"
  timeout "$limit" "$@"
  rc=$?
  echo "== $name: exit $rc after $((SECONDS - start)) s$([ $rc = 124 ] && echo ' (TIMEOUT)')"
  [ $rc = 0 ] || failed=$((failed + 1))
  return $rc
}

if [ $DRY = 1 ]; then
  DEVICE=cpu
  export TAMING_BENCH_SMOKE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  TEST_ARGS=(tests/test_devices.py tests/test_hardware.py -k "cpu or choice or isa or auto")
  BENCH_ARGS=(--repeats 1 --train-repeats 1 --batches 4 --original-batches 4 --threads 1)
else
  DEVICE=cuda
  TEST_ARGS=(tests/test_devices.py tests/test_sampling.py tests/test_gpt.py tests/test_hardware.py)
  BENCH_ARGS=(--repeats 5 --train-repeats 50 --batches 64 --original-batches 64 --threads 8)
fi

# ---- 0. packages ------------------------------------------------------------------------------
if "$PY" -m pip --version >/dev/null 2>&1; then
  INSTALL=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check
           --target "$SITE")
else  # no pip: the carried wheels are pure Python, so unpacking one installs it
  INSTALL=("$PY" -c "import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]" "$SITE")
fi
ls .gpu/wheels/*.whl >/dev/null 2>&1 && step "packages from .gpu/wheels" 45 "${INSTALL[@]}" .gpu/wheels/*.whl
echo "python $PY; reference data ${TAMING_SHARED:-../shared}"
if ! "$PY" -c "import omegaconf, webdataset, lightning, pytest, taming.hardware"; then
  echo "gpu_check: a package above is missing: run benchmarks/gpu_wheels.sh on the dev machine and carry .gpu" >&2
  exit 99
fi
if [ $DRY = 0 ]; then
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: torch sees no CUDA device here (use --dry-run on a CPU machine)" >&2
    exit 98
  fi
  "$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), 'x', torch.cuda.device_count(), '| torch', torch.__version__)"
fi
if [ -z "${TAMING_ORIGINAL_VENV:-}" ] && [ ! -x ../oracle-venv/bin/python ]; then
  # this interpreter for the original, if it has the original's imports and no `taming` of its own
  if (cd "$SITE" && PYTHONPATH=$SITE "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('taming') is not None
      or not all(u.find_spec(m) for m in ('omegaconf', 'pytorch_lightning', 'einops', 'requests', 'tqdm')))"); then
    mkdir -p "$SITE/original/bin"
    printf '#!/bin/sh\nexec "%s" "$@"\n' "$PY" >"$SITE/original/bin/python"
    chmod +x "$SITE/original/bin/python"
    export TAMING_ORIGINAL_VENV=$SITE/original
  fi
fi

# ---- 1. tests -----------------------------------------------------------------------------------
step "tests on $DEVICE" 150 "$PY" -m pytest -p no:warnings -p no:cacheprovider "${TEST_ARGS[@]}"

# ---- 2. ours against the original ---------------------------------------------------------------
step "ours against the original on $DEVICE" 240 "$PY" benchmarks/bench_vs_original.py --device "$DEVICE" \
  --cases encode,decode,cached,throughput,vqgan_train,gpt_train "${BENCH_ARGS[@]}"

# ---- 3. HOOK (issue 23): multi-GPU tests --------------------------------------------------------
gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())")
multi=$(grep -l "pytest.mark.multigpu" tests/test_*.py 2>/dev/null | tr '\n' ' ')
if [ "$gpus" -lt 2 ]; then
  echo "== multi-GPU tests: not run, $gpus GPU(s) here (they need 2)"
elif [ -z "$multi" ]; then
  echo "== multi-GPU tests: none marked multigpu in tests/ yet"
else
  step "multi-GPU tests ($multi)" 45 "$PY" -m pytest -p no:warnings -p no:cacheprovider -m multigpu $multi
fi

echo "== gpu_check: $failed step(s) failed, ${SECONDS} s in all"
exit $failed
