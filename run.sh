#!/usr/bin/env bash
# One entry point for people and CI: creates .venv on first use, then runs what was asked.
#   ./run.sh demo    the main job: train both stages on the built-in landscapes and sample a large image
#   ./run.sh test    the test suite
#   ./run.sh bench   the speed benchmarks (prints tables)
#   ./run.sh taming ARGS...   the `taming` command inside the environment
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
stamp="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  # The CPU build of torch 2.13.0 is on this machine's disk; without the pin pip fetches a multi-GB CUDA build.
  "$VENV/bin/pip" install -q "torch==2.13.0" || "$VENV/bin/pip" install -q torch
  "$VENV/bin/pip" install -q -e ".[test]"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
cmd="${1:-demo}"; shift || true
case "$cmd" in
  demo)  exec "$VENV/bin/taming" demo "$@" ;;
  test)  exec "$VENV/bin/python" -m pytest "$@" ;;
  bench) for b in benchmarks/bench_*.py; do "$VENV/bin/python" "$b" "$@"; done ;;
  taming) exec "$VENV/bin/taming" "$@" ;;
  *) echo "usage: ./run.sh {demo|test|bench|taming ARGS}" >&2; exit 2 ;;
esac
