"""Hardware detection and the precision decision (taming/hardware.py): on this machine's CPU, and on faked ones."""
import pytest
import torch

from taming import hardware
from taming.hardware import Hardware, choose, cpu_isa, detect_cpu

FLAGS = {
    "amx_bf16": "fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8",
    "avx512_bf16": "fpu sse2 avx2 avx512f avx512_vnni avx512_bf16",
    "avx512": "fpu sse2 avx2 avx512f",
    "avx2": "fpu sse2 avx avx2 fma",
    "baseline": "fpu sse2",
}


def cpuinfo(flags: str, vendor: str = "GenuineIntel") -> str:
    return f"processor\t: 0\nvendor_id\t: {vendor}\nmodel name\t: Fake CPU\nflags\t\t: {flags}\n"


@pytest.mark.parametrize("isa", list(FLAGS))
def test_isa_from_faked_flags(isa):
    hw = detect_cpu(cpuinfo(FLAGS[isa]))
    assert hw == Hardware("cpu", "Fake CPU", isa, vendor="GenuineIntel")


def test_torch_capability_when_there_are_no_flags():
    assert cpu_isa(set(), "AVX512") == "avx512"
    assert cpu_isa(set(), "AVX2") == "avx2"
    assert cpu_isa(set(), "DEFAULT") == "baseline"


@pytest.mark.parametrize("isa, decode, first_stage, train", [
    ("amx_bf16", "bf16", torch.bfloat16, "bf16-mixed"),
    ("avx512_bf16", "int8", None, "32"),  # bf16 at half the fp32 rate without AMX
    ("avx512", "int8", None, "32"),
    ("avx2", "int8", None, "32"),  # FBGEMM needs AVX2
    ("baseline", "fp32", None, "32"),
])
def test_choice_per_cpu(isa, decode, first_stage, train):
    choice = choose(detect_cpu(cpuinfo(FLAGS[isa])))
    assert (choice.decode, choice.first_stage, choice.train) == (decode, first_stage, train)


def test_amd_avx512_bf16_uses_bf16_for_convolutions_and_training_int8_for_decoding():
    choice = choose(detect_cpu(cpuinfo(FLAGS["avx512_bf16"], vendor="AuthenticAMD")))
    assert (choice.decode, choice.first_stage, choice.train) == ("int8", torch.bfloat16, "bf16-mixed")
    choice = choose(detect_cpu(cpuinfo(FLAGS["avx512"], vendor="AuthenticAMD")))  # Zen 3: no bf16 at all
    assert (choice.decode, choice.first_stage, choice.train) == ("int8", None, "32")


@pytest.mark.parametrize("bf16, decode, first_stage, train", [
    (True, "bf16", torch.bfloat16, "bf16-mixed"),
    (False, "fp32", None, "32"),
])
def test_choice_per_gpu(bf16, decode, first_stage, train):
    choice = choose(Hardware("cuda", "Fake GPU", "cuda", gpu_bf16=bf16))
    assert (choice.decode, choice.first_stage, choice.train) == (decode, first_stage, train)


def test_choice_on_this_cpu():
    flags = hardware.cpu_flags()
    hw = hardware.detect("cpu")
    assert hw.device == "cpu"
    if "amx_bf16" in flags:
        assert hw.isa == "amx_bf16" and choose(hw).decode == "bf16"
    elif "avx2" in flags:  # this project's machines: AVX-512 (with AVX512-BF16), no AMX
        assert hw.isa in ("avx512_bf16", "avx512", "avx2") and choose(hw).decode == "int8"
        amd_bf16 = hw.isa == "avx512_bf16" and hw.vendor == "AuthenticAMD"  # bf16 GEMMs 2x fp32 there
        assert choose(hw).first_stage == (torch.bfloat16 if amd_bf16 else None)
        assert choose(hw).train == ("bf16-mixed" if amd_bf16 else "32")
    assert hw.isa in hardware.ISAS
