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
    """This machine, or the class TAMING_CPU_ISA asks for (tests/cpu_classes.py runs every one)."""
    hw = hardware.detect("cpu")
    assert hw.device == "cpu"
    if hw.isa == "amx_bf16":
        assert choose(hw).decode == "bf16"
    elif hw.isa == "baseline":
        assert choose(hw) == choose(detect_cpu(cpuinfo(FLAGS["baseline"])))
    else:  # this project's machines: AVX-512 (with AVX512-BF16), no AMX; AVX2 ones
        assert choose(hw).decode == "int8"
        amd_bf16 = hw.isa == "avx512_bf16" and hw.vendor == "AuthenticAMD"  # bf16 GEMMs 2x fp32 there
        assert choose(hw).first_stage == (torch.bfloat16 if amd_bf16 else None)
        assert choose(hw).train == ("bf16-mixed" if amd_bf16 else "32")
    assert hw.isa in hardware.ISAS


def test_a_cpu_class_on_request(monkeypatch):
    monkeypatch.delenv("TAMING_CPU_ISA", raising=False)
    machine = hardware.detect_cpu()
    assert machine.machine_isa == ""
    for isa in hardware.runnable_isas(machine.isa):
        monkeypatch.setenv("TAMING_CPU_ISA", isa)
        hw = hardware.detect_cpu()
        assert (hw.isa, hw.machine_isa, hw.name, hw.vendor) == (isa, machine.isa, machine.name, machine.vendor)
    above = hardware.ISAS[:hardware.ISAS.index(machine.isa)]
    for isa in above:  # e.g. amx_bf16 on this project's AMD CPU
        monkeypatch.setenv("TAMING_CPU_ISA", isa)
        with pytest.raises(hardware.CpuClassError, match=f"^TAMING_CPU_ISA={isa}: this CPU .{machine.isa}. cannot run "
                                                          f"that class; it runs {machine.isa}"):
            hardware.detect_cpu()
    monkeypatch.setenv("TAMING_CPU_ISA", "avx3")
    with pytest.raises(hardware.CpuClassError, match="^TAMING_CPU_ISA='avx3' is not a CPU class .one of amx_bf16, "):
        hardware.detect_cpu()


def test_requested_class_against_the_machine():
    assert hardware.runnable_isas("avx2") == ("avx2", "baseline")
    assert hardware.requested_isa("avx512_bf16", "avx2") == "avx2"
    assert hardware.requested_isa("avx2", "") == "avx2"  # nothing asked: the machine's
    with pytest.raises(hardware.CpuClassError, match="this CPU .avx2. cannot run that class; it runs avx2, baseline"):
        hardware.requested_isa("avx2", "avx512")


@pytest.mark.parametrize("isa, vnni, want", [
    ("amx_bf16", True, ("avx512", "AVX512_CORE_AMX", "AVX512_E4", "AVX512_E1")),
    ("avx512_bf16", True, ("avx512", "AVX512_CORE_BF16", "AVX512_E3", "AVX512_E1")),
    ("avx512", True, ("avx512", "AVX512_CORE_VNNI", "AVX512_E1", "AVX512_E1")),
    ("avx512", False, ("avx512", "AVX512_CORE", "AVX512", "AVX512")),
    ("avx2", True, ("avx2", "AVX2", "AVX2", "AVX2")),
    ("baseline", True, ("default", "SSE41", "SSE4_2", "AVX2")),
])
def test_library_switches_per_class(isa, vnni, want):
    env = hardware.library_switches(isa, {"avx512_vnni"} if vnni else set())
    assert env == dict(zip(("TAMING_CPU_ISA", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                            "FBGEMM_ENABLE_INSTRUCTIONS"), (isa, *want)))


def test_the_switches_are_filled_in_before_torch_runs(tmp_path):
    """TAMING_CPU_ISA alone in a fresh process: importing taming sets the libraries' switches, and
    PyTorch's kernels follow them; a switch the user set stays."""
    import os
    import subprocess
    import sys

    switches = hardware.library_switches("baseline")  # every CPU runs the lowest class
    env = {k: v for k, v in os.environ.items() if k not in switches} | {"TAMING_CPU_ISA": "baseline",
                                                                        "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    code = ("import os, taming.hardware, torch; print(torch.backends.cpu.get_cpu_capability(), "
            "os.environ['ONEDNN_MAX_CPU_ISA'], os.environ['MKL_ENABLE_INSTRUCTIONS'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["DEFAULT", "SSE41", "AVX2"]


def test_a_class_the_cpu_cannot_run_is_one_line_from_the_commands(monkeypatch, capsys):
    from taming.cli.errors import run_reporting_errors

    monkeypatch.setenv("TAMING_CPU_ISA", "avx3")
    assert run_reporting_errors("sample", hardware.detect_cpu) == 2
    assert capsys.readouterr().err == ("taming sample: error: TAMING_CPU_ISA='avx3' is not a CPU class (one of "
                                       "amx_bf16, avx512_bf16, avx512, avx2, baseline)\n")
