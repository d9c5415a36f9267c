"""C kernels of this package, compiled for the CPU at hand on first use and loaded with ctypes.

Why: sampling's one-code steps on the CPU (taming/transformer/cpu_decode.c: the attention over a
reduced cache, the whole int8 step) are small loops that no PyTorch op runs at the memory's
speed, and where every extra op costs more dispatch time than work. A plain C file compiled with
the machine's own vector instructions (-march=native) runs them in one call. Inductor
(torch.compile) ran the attention 2x slower and took 5-10 s to compile per process; gcc builds
the file in ~1 s, once per machine.

`load(source)` compiles `source` with $CC (else gcc, cc or clang) into the kernel cache
($TAMING_KERNEL_CACHE, else $XDG_CACHE_HOME/taming/kernels, else ~/.cache/taming/kernels), named
by a hash of the source, the compiler, the flags and the CPU's flags (a shared home directory
seen from different CPUs gets one build per CPU), and returns the loaded library. It tries OpenMP
and -march=native first and drops them where the compiler refuses (Apple clang has no -fopenmp;
the kernels then run on one thread). Every failure raises `NativeUnavailable` naming the cause;
callers fall back to PyTorch code and say so once.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from taming.hardware import cpu_flags

# reassociation lets dot products be summed as vector trees (strict IEEE order forces a serial
# sum); no -ffast-math: divisions, rounding and NaN checks stay exact
BASE_FLAGS = ("-O3", "-fPIC", "-shared", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros",
              "-fno-trapping-math")
OPTIONAL_FLAGS = (("-march=native", "-fopenmp"), ("-fopenmp",), ("-march=native",), ())
_loaded: dict[Path, ctypes.CDLL] = {}
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


def load(source: Path) -> ctypes.CDLL:
    """The compiled `source` (cached per machine and process); raises NativeUnavailable."""
    with _lock:
        if source in _loaded:
            return _loaded[source]
        if not source.is_file():
            raise NativeUnavailable(f"the kernel source {source} is missing (reinstall taming)")
        cc = compiler()
        ident = "\n".join([source.read_text(), cc, _version(cc), " ".join(sorted(cpu_flags()))])
        errors = []
        for extra in OPTIONAL_FLAGS:
            flags = BASE_FLAGS + extra
            key = hashlib.sha256(f"{ident}\n{flags}".encode()).hexdigest()[:16]
            out = cache_dir() / f"{source.stem}-{key}.so"
            if not out.exists():
                error = _build(source, cc, flags, out)
                if error is not None:
                    errors.append(f"{' '.join(extra) or 'plain'}: {error}")
                    continue
            try:
                _loaded[source] = ctypes.CDLL(str(out))
            except OSError as err:
                errors.append(f"loading {out}: {err}")
                continue
            return _loaded[source]
        raise NativeUnavailable(f"compiling {source.name} with {cc} failed ({'; '.join(errors)})")


__all__ = ["NativeUnavailable", "cache_dir", "compiler", "load"]
