"""What this machine is (`detect`), and the precision decision made from it (`choose`), which
`precision="auto"` takes (taming/precision.py). The ISA flags alone do not decide: without AMX, bf16
is fast on AMD's AVX512-BF16 CPUs and slow on Intel's, so `choose` reads the vendor too:

| hardware                   | decoding (`generate`)    | first stage (`prepare_fast`) | training    |
|----------------------------|--------------------------|------------------------------|-------------|
| CPU with AMX-BF16          | bf16                     | channels_last + bf16         | bf16-mixed  |
| AMD CPU with AVX512-BF16   | int8 one-code steps      | channels_last + bf16         | bf16-mixed  |
| other CPU, AVX-512 / AVX2  | int8 one-code steps      | channels_last fp32           | 32          |
| CPU without AVX2           | fp32                     | channels_last fp32           | 32          |
| GPU with bf16              | bf16                     | channels_last + bf16         | bf16-mixed  |
| GPU without bf16           | fp32                     | channels_last fp32           | 32          |

Measurements: BENCHMARKS.md "Automatic precision" and "Why the decoding plan". The Python API that
mirrors the original stays exact float32: "auto" is what the commands default to.

**A CPU class on request.** `TAMING_CPU_ISA=amx_bf16|avx512_bf16|avx512|avx2|baseline` makes
`detect` report that class instead of the machine's (a class above the machine's is refused with
one line, `CpuClassError`), so the precision choice, the decoding plan and its backend
(taming.precision.decode_plan) and the native kernels' build (taming.native: compiler target,
kernel variant, cache key) are those of that class. The libraries decide for themselves, so the
class also needs their own switches, read before their first kernel runs: `library_switches(isa)`
gives them (PyTorch's ATEN_CPU_CAPABILITY, oneDNN's ONEDNN_MAX_CPU_ISA, MKL's
MKL_ENABLE_INSTRUCTIONS, FBGEMM's FBGEMM_ENABLE_INSTRUCTIONS), and importing this module with
TAMING_CPU_ISA set fills in those not already set. Setting all of them in the environment of a
fresh process is the sure way (tests/cpu_classes.py does, per class). MKL honours its switch on
Intel CPUs only (on AMD it picks its AVX2 code itself).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
ISAS = ("amx_bf16", "avx512_bf16", "avx512", "avx2", "baseline")  # fastest first
CPU_ISA_ENV = "TAMING_CPU_ISA"


def _read_cpuinfo() -> str:
    """/proc/cpuinfo; empty where there is no such file."""
    try:
        return CPUINFO.read_text()
    except OSError:
        return ""


def _cpuinfo_field(text: str, key: str, default: str) -> str:
    for line in text.splitlines():
        if line.startswith(key):
            return line.split(":", 1)[1].strip()
    return default


def cpu_flags(text: str | None = None) -> set[str]:
    """The `flags` of /proc/cpuinfo (or of `text`); empty where there is no such file."""
    return set(_cpuinfo_field(_read_cpuinfo() if text is None else text, "flags", "").split())


class CpuClassError(RuntimeError):
    """TAMING_CPU_ISA names no class, or one this CPU cannot run (the message is one line)."""


def library_switches(isa: str, flags: set[str] | None = None) -> dict[str, str]:
    """The environment that keeps PyTorch, oneDNN, MKL and FBGEMM within CPU class `isa` (flags: the
    machine's /proc/cpuinfo flags, for AVX512-VNNI within the avx512 class; default: this machine's)."""
    if isa not in ISAS:
        raise CpuClassError(f"{CPU_ISA_ENV}={isa!r} is not a CPU class (one of {', '.join(ISAS)})")
    vnni = "avx512_vnni" in (cpu_flags() if flags is None else flags)
    aten, onednn, mkl, fbgemm = {
        "amx_bf16": ("avx512", "AVX512_CORE_AMX", "AVX512_E4", "AVX512_E1"),
        "avx512_bf16": ("avx512", "AVX512_CORE_BF16", "AVX512_E3", "AVX512_E1"),
        "avx512": ("avx512",) + (("AVX512_CORE_VNNI", "AVX512_E1", "AVX512_E1") if vnni
                                 else ("AVX512_CORE", "AVX512", "AVX512")),
        "avx2": ("avx2", "AVX2", "AVX2", "AVX2"),
        "baseline": ("default", "SSE41", "SSE4_2", "AVX2"),
    }[isa]
    return {"TAMING_CPU_ISA": isa, "ATEN_CPU_CAPABILITY": aten, "ONEDNN_MAX_CPU_ISA": onednn,
            "MKL_ENABLE_INSTRUCTIONS": mkl, "FBGEMM_ENABLE_INSTRUCTIONS": fbgemm}


def _apply_switches() -> None:
    """TAMING_CPU_ISA set: the libraries' own switches that are not set yet, before torch runs."""
    isa = os.environ.get(CPU_ISA_ENV, "").strip()
    if isa in ISAS:  # a bad value is reported by detect(), where the caller can catch it
        for key, value in library_switches(isa).items():
            os.environ.setdefault(key, value)


_apply_switches()  # before torch is imported here (the libraries read them at their first kernel)

import torch  # noqa: E402


@dataclass(frozen=True)
class Hardware:
    device: str  # "cpu" or "cuda"
    name: str  # CPU model name or GPU name
    isa: str = "baseline"  # CPUs: one of ISAS (TAMING_CPU_ISA's class where set); GPUs: "cuda"
    gpu_bf16: bool = False  # GPUs: bf16 supported natively (compute capability >= 8)
    vendor: str = ""  # CPUs: /proc/cpuinfo's vendor_id (GenuineIntel, AuthenticAMD)
    machine_isa: str = ""  # CPUs with TAMING_CPU_ISA set: the machine's own class ("" otherwise)

    @property
    def bf16_fast(self) -> bool:
        """bf16 matmuls and convolutions clearly faster than float32 here."""
        if self.device == "cuda":
            return self.gpu_bf16
        return self.isa == "amx_bf16" or (self.isa == "avx512_bf16" and self.vendor == "AuthenticAMD")


@dataclass(frozen=True)
class Choice:
    decode: str  # taming.sampling precision: "fp32", "bf16" or "int8"
    first_stage: torch.dtype | None  # VQGAN.prepare_fast dtype (None: channels_last float32)
    train: str  # Lightning precision: "32" or "bf16-mixed"
    why: str

    def describe(self) -> str:
        fs = "bf16" if self.first_stage == torch.bfloat16 else "channels_last fp32"
        return f"decode {self.decode}, first stage {fs}, training {self.train} ({self.why})"


def cpu_isa(flags: set[str], capability: str | None = None) -> str:
    """The best ISA of ISAS that the flags (or torch's capability string, e.g. "AVX512") show."""
    for flag, isa in (("amx_bf16", "amx_bf16"), ("avx512_bf16", "avx512_bf16"), ("avx512f", "avx512"), ("avx2", "avx2")):
        if flag in flags:
            return isa
    cap = (capability or "").upper()  # no /proc/cpuinfo (macOS, containers): ask torch
    if cap.startswith("AVX512"):
        return "avx512"
    if cap.startswith("AVX2"):
        return "avx2"
    return "baseline"


def runnable_isas(machine_isa: str) -> tuple[str, ...]:
    """The classes a CPU of class `machine_isa` can run: its own and every one below it."""
    return ISAS[ISAS.index(machine_isa):]


def requested_isa(machine_isa: str, request: str | None = None) -> str:
    """The class to behave as: `request` (default: $TAMING_CPU_ISA) where set, else the machine's.
    Raises CpuClassError for a name not in ISAS or a class above the machine's."""
    request = (os.environ.get(CPU_ISA_ENV, "") if request is None else request).strip()
    if not request:
        return machine_isa
    if request not in ISAS:
        raise CpuClassError(f"{CPU_ISA_ENV}={request!r} is not a CPU class (one of {', '.join(ISAS)})")
    if request not in runnable_isas(machine_isa):
        raise CpuClassError(f"{CPU_ISA_ENV}={request}: this CPU ({machine_isa}) cannot run that class; "
                            f"it runs {', '.join(runnable_isas(machine_isa))}")
    return request


def detect_cpu(cpuinfo: str | None = None, capability: str | None = None) -> Hardware:
    """The CPU from /proc/cpuinfo, as the class TAMING_CPU_ISA asks for where set (or the given
    text and torch capability string, for tests: no override applies to them)."""
    if cpuinfo is not None:
        return Hardware("cpu", _cpuinfo_field(cpuinfo, "model name", "CPU"), cpu_isa(cpu_flags(cpuinfo), capability),
                        vendor=_cpuinfo_field(cpuinfo, "vendor_id", ""))
    machine = detect_cpu(_read_cpuinfo(), capability or torch.backends.cpu.get_cpu_capability())
    if not os.environ.get(CPU_ISA_ENV, "").strip():
        return machine
    return Hardware("cpu", machine.name, requested_isa(machine.isa), vendor=machine.vendor, machine_isa=machine.isa)


def detect_gpu(index: int = 0) -> Hardware:
    props = torch.cuda.get_device_properties(index)
    return Hardware("cuda", props.name, "cuda", gpu_bf16=props.major >= 8)


@lru_cache(maxsize=None)
def _detect(device_type: str, index: int) -> Hardware:
    return detect_gpu(index) if device_type == "cuda" else detect_cpu()


def detect(device: torch.device | str | None = None) -> Hardware:
    """The hardware of `device` (default: the first GPU if there is one, else the CPU)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    return _detect(device.type, (device.index or 0) if device.type == "cuda" else 0)


def choose(hw: Hardware | None = None) -> Choice:
    """The precision decision for `hw` (default: `detect()`); see the module docstring's table."""
    hw = hw or detect()
    if hw.bf16_fast and hw.isa == "avx512_bf16":  # fast bf16 GEMMs, slow one-query bf16 attention
        return Choice("int8", torch.bfloat16, "bf16-mixed",
                      "AMD AVX512-BF16 CPU: bf16 convolutions and matmuls ~2x fp32, int8 one-code steps ~5x")
    if hw.bf16_fast:
        what = "AMX-BF16 CPU" if hw.device == "cpu" else "GPU with bf16"
        return Choice("bf16", torch.bfloat16, "bf16-mixed", f"{what}: bf16 is fast")
    if hw.device == "cuda":
        return Choice("fp32", None, "32", "GPU without bf16")
    if hw.isa in ("avx512_bf16", "avx512", "avx2"):
        return Choice("int8", None, "32", f"{hw.isa} CPU without AMX: bf16 slower than fp32, int8 decoding wins")
    return Choice("fp32", None, "32", "CPU without AVX2: no FBGEMM int8, no fast bf16")


__all__ = ["Hardware", "Choice", "CpuClassError", "ISAS", "CPU_ISA_ENV", "cpu_flags", "cpu_isa", "detect_cpu",
           "detect_gpu", "detect", "library_switches", "requested_isa", "runnable_isas", "choose"]
