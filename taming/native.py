"""C kernels of this package, compiled for the CPU at hand on first use and loaded with ctypes.

Why: sampling's one-code steps on the CPU (taming/transformer/cpu_decode.c: the attention over a
reduced cache, the whole int8 step) are small loops that no PyTorch op runs at the memory's
speed, and where every extra op costs more dispatch time than work. A plain C file compiled with
the machine's own vector instructions (-march=native) runs them in one call. Inductor
(torch.compile) ran the attention 2x slower and took 5-10 s to compile per process; gcc builds
the file in ~1 s, once per machine.

`load(source, isa)` compiles `source` with $CC (else gcc, cc or clang) into the kernel cache
($TAMING_KERNEL_CACHE, else $XDG_CACHE_HOME/taming/kernels, else ~/.cache/taming/kernels), named
by a hash of the source, the compiler, the flags, the CPU class and the CPU's flags (a shared home
directory seen from different CPUs gets one build per CPU), and returns the loaded library.

The target is the CPU class (`isa`, default `taming.hardware.detect("cpu").isa`, which honours
TAMING_CPU_ISA): the machine's own class builds with -march=native; a lower class on an x86-64
builds for that class alone (`target_flags`: x86-64-v4 with VNNI / bf16 for the AVX-512 classes,
x86-64-v3 for avx2, plain x86-64 (SSE2) for baseline), so the source's kernel variants (AVX512-VNNI,
AVX2, portable C: cpu_decode.c) follow the class, and a machine can build and test every class
below its own. It tries OpenMP first and drops it where the compiler refuses (Apple clang has no
-fopenmp; the kernels then run on one thread), likewise -march=native. Every failure raises
`NativeUnavailable` naming the cause; callers fall back to PyTorch code and say so once.

The flags keep every build's float arithmetic in the source's order: no reassociation and no
contracted multiply-adds (-ffp-contract=off), so the variants compute the same numbers (the
source sums in a fixed order of 16 lanes; cpu_decode.c says why).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from taming.hardware import ISAS, cpu_flags, detect

# every float operation as written (no reassociation, no FMA contraction): the same numbers from
# every target; no -ffast-math: divisions, rounding and NaN checks stay exact
BASE_FLAGS = ("-O3", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off")
OPTIONAL_FLAGS = (("-march=native", "-fopenmp"), ("-fopenmp",), ("-march=native",), ())
# x86-64 targets of the classes below a machine's own (gcc >= 11, clang >= 12 know these levels)
X86_TARGETS = {"avx512_bf16": ("-march=x86-64-v4", "-mavx512vnni", "-mavx512bf16"),
               "avx512": ("-march=x86-64-v4",), "avx2": ("-march=x86-64-v3",), "baseline": ("-march=x86-64",)}
_loaded: dict[tuple[Path, str], ctypes.CDLL] = {}
_lock = threading.Lock()


class NativeUnavailable(RuntimeError):
    """The C kernel could not be built or loaded here (the message says why)."""


def cache_dir() -> Path:
    if os.environ.get("TAMING_KERNEL_CACHE"):
        return Path(os.environ["TAMING_KERNEL_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "taming" / "kernels"


def compiler() -> str:
    """The C compiler to use: $CC, else the first of gcc, cc, clang on PATH."""
    if os.environ.get("CC"):
        return os.environ["CC"]
    for name in ("gcc", "cc", "clang"):
        if shutil.which(name):
            return name
    raise NativeUnavailable("no C compiler found (install gcc, or set CC)")


def _version(cc: str) -> str:
    try:
        done = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        raise NativeUnavailable(f"the C compiler {cc!r} does not run: {err}") from err
    return done.stdout.splitlines()[0] if done.stdout else ""


def _build(source: Path, cc: str, flags: tuple[str, ...], out: Path) -> str | None:
    """Compile source into out (atomically); None on success, else the compiler's first error line."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
    except OSError as err:
        return f"cannot write the kernel cache {out.parent} ({err}; set TAMING_KERNEL_CACHE)"
    try:
        done = subprocess.run([cc, *flags, str(source), "-o", tmp, "-lm"], capture_output=True, text=True,
                              timeout=300)
        if done.returncode:
            lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            errors = [line for line in lines if "error" in line.lower()]
            return (errors or lines or [f"exit status {done.returncode}"])[0]
        os.replace(tmp, out)
        return None
    except (OSError, subprocess.SubprocessError) as err:
        return str(err)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def target_flags(isa: str, machine_isa: str | None = None, flags: set[str] | None = None) -> tuple[tuple[str, ...], ...]:
    """The compiler flag sets to try, best first, for CPU class `isa` on a machine of class
    `machine_isa` (default: this one's) with /proc/cpuinfo `flags` (default: this one's)."""
    if isa not in ISAS:
        raise NativeUnavailable(f"no CPU class {isa!r} (one of {', '.join(ISAS)})")
    machine_isa = machine_isa or detect("cpu").machine_isa or detect("cpu").isa
    if isa == machine_isa or platform.machine().lower() not in ("x86_64", "amd64"):
        return OPTIONAL_FLAGS  # the machine's own class (or not an x86: no lower classes here)
    flags = cpu_flags() if flags is None else flags
    target = X86_TARGETS[isa] + (("-mavx512vnni",) if isa == "avx512" and "avx512_vnni" in flags else ())
    return (target + ("-mtune=native", "-fopenmp"), target + ("-mtune=native",), target)


def load(source: Path, isa: str | None = None) -> ctypes.CDLL:
    """The compiled `source` for CPU class `isa` (default: this machine's, or TAMING_CPU_ISA's),
    cached per machine and process; raises NativeUnavailable."""
    isa = isa or detect("cpu").isa
    with _lock:
        if (source, isa) in _loaded:
            return _loaded[source, isa]
        if not source.is_file():
            raise NativeUnavailable(f"the kernel source {source} is missing (reinstall taming)")
        cc = compiler()
        ident = "\n".join([source.read_text(), cc, _version(cc), isa, " ".join(sorted(cpu_flags()))])
        errors = []
        for extra in target_flags(isa):
            flags = BASE_FLAGS + extra
            key = hashlib.sha256(f"{ident}\n{flags}".encode()).hexdigest()[:16]
            out = cache_dir() / f"{source.stem}-{isa}-{key}.so"
            if not out.exists():
                error = _build(source, cc, flags, out)
                if error is not None:
                    errors.append(f"{' '.join(extra) or 'plain'}: {error}")
                    continue
            try:
                _loaded[source, isa] = ctypes.CDLL(str(out))
            except OSError as err:
                errors.append(f"loading {out}: {err}")
                continue
            return _loaded[source, isa]
        raise NativeUnavailable(f"compiling {source.name} for the {isa} class with {cc} failed ({'; '.join(errors)})")


__all__ = ["NativeUnavailable", "cache_dir", "compiler", "load", "target_flags"]
