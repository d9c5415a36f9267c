"""The one precision setting (`--precision` of every command, the app's choice, `generate(precision=)`)
and what it means for each part on a device.

Values (PRECISIONS): "fp32" is exact float32 everywhere (the original's numbers); "bf16" runs the
first stage's convolutions and the GPT's decoding in bf16; "int8" is a decoding precision (the GPT's
one-code steps on int8 weights; the first stage stays float32, channels_last); "auto" takes what
taming.hardware.choose picks for the device. `resolve(precision, device)` turns a value into a
`Precision`: the GPT's decoding plan (`DecodePlan`: the phases' arithmetic and the backend that runs
the one-code steps, taming/transformer/decode/), the first stage's layout and dtype, and Lightning's
training precision. Which plan each hardware class gets, and why: BENCHMARKS.md "Automatic precision".
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from taming.hardware import CPU_ISA_ENV, Hardware, choose, detect

PRECISIONS = ("auto", "fp32", "bf16", "int8")
FLAG_HELP = ("auto (default): chosen for this hardware; fp32: exact float32; bf16: bf16 convolutions and "
             "decoding; int8: int8 GPT decoding steps (first stage float32)")
_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.int8: "int8 (a float32 scale per vector)"}


@dataclass(frozen=True)
class DecodePlan:
    """How sampling decodes on one device."""
    step: str  # the Linears of one-code steps (few rows): "fp32", "bf16" or "int8"
    prefill: str  # the Linears of longer inputs (the conditioning's prefill): "fp32", "bf16" or "int8"
    cache: torch.dtype  # the key/value cache: float32, bf16 or int8 (attention reads 1/2 or ~1/4 of the bytes)
    backend: str = "pytorch"  # generate's one-code steps: "pytorch", "native" (one C call), "cuda_graph"
    autocast: bool = False  # everything under bf16 autocast (GPUs)

    def describe(self) -> str:
        return (f"one-code steps {self.step} ({self.backend}), prefill {self.prefill}, "
                f"key/value cache {_NAMES[self.cache]}")


@dataclass(frozen=True)
class Precision:
    """What one precision value means on one device, for each part."""
    name: str  # the decoding precision ("auto" resolved): "fp32", "bf16" or "int8"; what settings record
    decode: DecodePlan
    first_stage: str  # "fp32" (the exact path), "channels_last" (float32) or "bf16" (VQGAN.prepare_fast)
    train: str  # Lightning's precision: "32" or "bf16-mixed"


def decode_plan(name: str, hw: Hardware) -> DecodePlan:
    """The plan of decoding precision `name` ("fp32", "bf16", "int8") on `hw`. The one place a CPU class
    (taming.hardware.detect, with its override) chooses a decoding backend.

    "int8" on a CPU: an int8 cache read by the native step, which has a build for every class (AVX512-VNNI,
    AVX2, portable C: the same numbers); the prefill in bf16 where bf16 GEMMs are fast, else on the int8
    copies (FBGEMM, faster than float32 on AVX2: BENCHMARKS.md "CPU classes")."""
    if hw.device == "cuda":  # one CUDA graph per sampling call; no int8 kernels on a GPU here: float32
        bf16 = name == "bf16"
        return DecodePlan(name if bf16 else "fp32", "bf16" if bf16 else "fp32", torch.bfloat16 if bf16 else torch.float32,
                          "cuda_graph", autocast=bf16)
    if name == "fp32":
        return DecodePlan("fp32", "fp32", torch.float32)
    if name == "bf16":  # bf16 GEMMs for the prefill only where they are fast
        return DecodePlan("bf16", "bf16" if hw.bf16_fast else "fp32", torch.bfloat16)
    return DecodePlan("int8", "bf16" if hw.bf16_fast else "int8", torch.int8, "native")


def resolve(precision: str, device: torch.device | str | None = None) -> Precision:
    """`precision` (one of PRECISIONS) for `device` (default: the first GPU, else the CPU)."""
    hw = detect(device)
    choice = choose(hw)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        first = {None: "channels_last", torch.bfloat16: "bf16"}[choice.first_stage]
        return Precision(choice.decode, decode_plan(choice.decode, hw), first, choice.train)
    first = {"fp32": "fp32", "bf16": "bf16", "int8": "channels_last"}[precision]
    return Precision(precision, decode_plan(precision, hw), first, "bf16-mixed" if precision == "bf16" else "32")


def prepare_first_stage(model: torch.nn.Module, precision: str | Precision) -> torch.nn.Module:
    """The first stage for `precision`: "fp32" leaves the exact float32 path (the numbers the fixtures
    check); otherwise VQGAN.prepare_fast (channels_last weights, in bf16 for "bf16")."""
    if isinstance(precision, str):
        precision = resolve(precision, next(model.parameters()).device)
    if precision.first_stage != "fp32" and hasattr(model, "prepare_fast"):
        model.prepare_fast(torch.bfloat16 if precision.first_stage == "bf16" else None)
    return model


def add_flag(parser: argparse.ArgumentParser) -> None:
    """The `--precision` flag of every inference command."""
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=FLAG_HELP)


def summary(device: torch.device | str | None = None) -> str:
    """One line for benchmarks and logs: what was detected and what "auto" chooses."""
    hw = detect(device)
    isa = f", bf16 {'yes' if hw.gpu_bf16 else 'no'}" if hw.device == "cuda" else f", ISA {hw.isa}"
    if hw.machine_isa:
        isa += f" (as {CPU_ISA_ENV} asks; this CPU: {hw.machine_isa})"
    auto = resolve("auto", device)
    return (f"detected: {hw.device} {hw.name}{isa}, torch {torch.__version__}; auto chooses: "
            f"{choose(hw).describe()}; sampling: {auto.decode.describe()}")


__all__ = ["PRECISIONS", "DecodePlan", "Precision", "add_flag", "decode_plan", "prepare_first_stage", "resolve",
           "summary"]
