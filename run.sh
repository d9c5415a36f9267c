#!/usr/bin/env bash
# One entry point for people and CI: creates .venv on first use, then runs what was asked.
#   ./run.sh demo    the main job: train both stages on the built-in landscapes and sample a large image
#   ./run.sh test    the test suite (first installs the programs it needs, see test_tools below)
#   ./run.sh tools   only that install: Debian's chromium + chromium-driver and g++
#   ./run.sh bench   the speed benchmarks (prints tables)
#   ./run.sh taming ARGS...   the `taming` command inside the environment
set -euo pipefail
cd "$(dirname "$0")"

# The programs the tests use besides Python: the app's browser test drives Debian's chromium through
# chromedriver (it fails without them, it is never skipped), and taming.native compiles sampling's CPU
# kernels (taming/transformer/cpu_decode.c) with g++, as Inductor (torch.compile) does; without it those
# paths fall back to PyTorch ops and their native side would go untested. Present: nothing to do (one
# `command -v` each). Missing: apt-get installs them (as root, or through sudo); where it cannot, ONE
# line says what to install and the tests do not start.
TOOLS="chromium chromedriver g++"   # the commands; their Debian packages: chromium chromium-driver g++
test_tools() {
  local missing="" t sudo=""
  for t in $TOOLS; do command -v "$t" >/dev/null 2>&1 || missing="$missing $t"; done
  [ -z "$missing" ] && return 0
  local say="run.sh: the tests need${missing} (Debian: apt-get install chromium chromium-driver g++); install them and run again"
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  if ! command -v apt-get >/dev/null 2>&1 || { [ -n "$sudo" ] && ! command -v sudo >/dev/null 2>&1; }; then
    echo "$say" >&2; return 1
  fi
  echo "run.sh: installing${missing} with apt-get (chromium chromium-driver g++)" >&2
  { $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends chromium chromium-driver g++; } >&2 || { echo "$say" >&2; return 1; }
  for t in $TOOLS; do command -v "$t" >/dev/null 2>&1 || { echo "$say" >&2; return 1; }; done
}

cmd="${1:-demo}"; shift || true
case "$cmd" in
  tools) test_tools; exit ;;
  test)  test_tools || exit 1 ;;  # before the environment: a machine that cannot run the tests says so at once
esac

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
case "$cmd" in
  demo)  exec "$VENV/bin/taming" demo "$@" ;;
  test)  exec "$VENV/bin/python" -m pytest "$@" ;;
  bench) for b in benchmarks/bench_*.py; do "$VENV/bin/python" "$b" "$@"; done ;;
  taming) exec "$VENV/bin/taming" "$@" ;;
  *) echo "usage: ./run.sh {demo|test|tools|bench|taming ARGS}" >&2; exit 2 ;;
esac
