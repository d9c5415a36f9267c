#!/usr/bin/env bash
# GPU check of issue 12, in under 8 minutes on one GPU:
#   1. the device-parametrized tests (and the sampling/GPT tests) on CUDA;
#   2. ours against the original on the same GPU: encode, decode (faceshq VQGAN, 256 px, batch 1),
#      cached sampling at batch 4 and 64 (26.5M GPT, 256 + 256 codes, top-k 100), 50 training steps
#      of each stage; one table (benchmarks/bench_vs_original.py).
# The original runs from $TAMING_ORIGINAL_VENV (see ../shared/oracle/README.md) when it exists;
# otherwise its column is empty (recorded numbers are CPU numbers).
#
#   benchmarks/gpu_check.sh            on a machine with a GPU
#   benchmarks/gpu_check.sh --dry-run  on the CPU with tiny workloads: checks that every step would run
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python)}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

if [ $DRY = 1 ]; then
  DEVICE=cpu
  export TAMING_BENCH_SMOKE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  TEST_ARGS=(tests/test_devices.py tests/test_hardware.py -k "cpu or choice or isa or auto")
  BENCH_ARGS=(--repeats 1 --train-repeats 2 --batches 4 --original-batches 4 --threads 1)
else
  DEVICE=cuda
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: torch sees no CUDA device here (use --dry-run on a CPU machine)" >&2
    exit 2
  fi
  "$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
  TEST_ARGS=(tests/test_devices.py tests/test_sampling.py tests/test_gpt.py tests/test_hardware.py)
  BENCH_ARGS=(--repeats 5 --train-repeats 50 --batches 64 --original-batches 64 --threads 8)
fi

echo "== tests on $DEVICE"
timeout 180 "$PY" -m pytest -q -x -p no:warnings "${TEST_ARGS[@]}"

echo "== ours against the original on $DEVICE"
timeout 300 "$PY" benchmarks/bench_vs_original.py --device "$DEVICE" \
  --cases encode,decode,cached,throughput,vqgan_train,gpt_train "${BENCH_ARGS[@]}"
