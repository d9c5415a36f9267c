"""Run the tests that depend on the CPU class once per class this machine can run below its own.

    python tests/cpu_classes.py [--classes avx2,baseline] [PYTEST ARGS...]

Each class runs in a fresh pytest process whose environment holds TAMING_CPU_ISA and the libraries'
own switches for that class (taming.hardware.library_switches: PyTorch's ATEN_CPU_CAPABILITY,
oneDNN's ONEDNN_MAX_CPU_ISA, MKL's MKL_ENABLE_INSTRUCTIONS, FBGEMM's FBGEMM_ENABLE_INSTRUCTIONS;
they are read when torch runs its first kernel, so they must be there before the process starts).
The machine's own class is the plain test suite's run. A class above this machine's cannot run
here: it is printed as such and counted, never skipped silently. One line per class, then a
summary line; the exit status is 1 if any class failed.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# the tests whose behaviour depends on the class: detection and the plan, the native kernels' build
# and step, the engine's reduced copies, sampling through them (test_cpu_classes.py compares every
# class's build in any one run, so it is not repeated per class)
FILES = ("tests/test_hardware.py", "tests/test_precision.py", "tests/test_native.py", "tests/test_decode_engine.py",
         "tests/test_decode_native.py", "tests/test_gpt.py", "tests/test_sampling.py", "tests/test_sample_window.py")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classes", help="comma-separated classes (default: every class below this machine's)")
    args, pytest_args = ap.parse_known_args()
    clean = {k: v for k, v in os.environ.items() if k != "TAMING_CPU_ISA"}
    os.environ.clear()
    os.environ.update(clean)  # the machine as it is, whatever the caller's environment asked for
    from taming import hardware

    machine = hardware.detect_cpu().isa
    below = hardware.runnable_isas(machine)[1:]
    wanted = args.classes.split(",") if args.classes else [isa for isa in hardware.ISAS if isa != machine]
    failed, ran, not_run = [], [], []
    for isa in wanted:
        if isa not in below:
            why = "the plain suite's run" if isa == machine else f"this CPU ({machine}) cannot run it"
            print(f"class {isa:12} not run: {why}", flush=True)
            if isa != machine:
                not_run.append(isa)
            continue
        env = clean | hardware.library_switches(isa)
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *FILES, *pytest_args],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
        result = lines[-1].strip("= ") if lines else f"exit status {done.returncode}"
        print(f"class {isa:12} {result} ({time.monotonic() - start:.0f} s; "
              f"{' '.join(f'{k}={v}' for k, v in env.items() if k in hardware.library_switches(isa))})", flush=True)
        ran.append(isa)
        if done.returncode:
            failed.append(isa)
            print(done.stdout[-6000:], done.stderr[-2000:], sep="\n", file=sys.stderr)
    print(f"CPU classes on this {machine} machine: {len(ran)} run ({', '.join(ran) or 'none'}), "
          f"{len(not_run)} not runnable here ({', '.join(not_run) or 'none'}), {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
