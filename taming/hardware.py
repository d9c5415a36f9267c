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
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
ISAS = ("amx_bf16", "avx512_bf16", "avx512", "avx2", "baseline")  # fastest first


@dataclass(frozen=True)
class Hardware:
    device: str  # "cpu" or "cuda"
    name: str  # CPU model name or GPU name
    isa: str = "baseline"  # CPUs: one of ISAS; GPUs: "cuda"
    gpu_bf16: bool = False  # GPUs: bf16 supported natively (compute capability >= 8)
    vendor: str = ""  # CPUs: /proc/cpuinfo's vendor_id (GenuineIntel, AuthenticAMD)

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


def cpu_flags(text: str | None = None) -> set[str]:
    """The `flags` of /proc/cpuinfo (or of `text`); empty where there is no such file."""
    if text is None:
        try:
            text = CPUINFO.read_text()
        except OSError:
            return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_isa(flags: set[str], capability: str | None = None) -> str:
    """The best ISA of ISAS that the flags (or torch's capability string, e.g. "AVX512") show."""
    if "amx_bf16" in flags:
        return "amx_bf16"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    cap = (capability or "").upper()  # no /proc/cpuinfo (macOS, containers): ask torch
    if cap.startswith("AVX512"):
        return "avx512"
    if cap.startswith("AVX2"):
        return "avx2"
    return "baseline"


def _cpuinfo_field(text: str, key: str, default: str) -> str:
    for line in text.splitlines():
        if line.startswith(key):
            return line.split(":", 1)[1].strip()
    return default


def detect_cpu(cpuinfo: str | None = None, capability: str | None = None) -> Hardware:
    """The CPU from /proc/cpuinfo (or the given text and torch capability string, for tests)."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            cpuinfo = ""
        capability = capability or torch.backends.cpu.get_cpu_capability()
    return Hardware("cpu", _cpuinfo_field(cpuinfo, "model name", "CPU"), cpu_isa(cpu_flags(cpuinfo), capability),
                    vendor=_cpuinfo_field(cpuinfo, "vendor_id", ""))


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


__all__ = ["Hardware", "Choice", "ISAS", "cpu_flags", "cpu_isa", "detect_cpu", "detect_gpu", "detect", "choose"]
