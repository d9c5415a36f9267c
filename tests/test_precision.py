"""The one precision setting (taming/precision.py): its values, what each means per hardware class
(decoding plan, first stage, training), the flag every command gets, and "auto" end to end."""
import argparse

import pytest
import torch
from omegaconf import OmegaConf

from taming import hardware, precision
from taming.hardware import Hardware, choose, detect_cpu
from taming.precision import PRECISIONS, DecodePlan, decode_plan, resolve
from test_hardware import FLAGS, cpuinfo

BF16, FP32, INT8 = torch.bfloat16, torch.float32, torch.int8
AMD = detect_cpu(cpuinfo(FLAGS["avx512_bf16"], vendor="AuthenticAMD"))
INTEL = detect_cpu(cpuinfo(FLAGS["avx512_bf16"]))
AMX = detect_cpu(cpuinfo(FLAGS["amx_bf16"]))
AVX2 = detect_cpu(cpuinfo(FLAGS["avx2"], vendor="AuthenticAMD"))
BASELINE = detect_cpu(cpuinfo(FLAGS["baseline"]))
GPU = Hardware("cuda", "Fake GPU", "cuda", gpu_bf16=True)
OLD_GPU = Hardware("cuda", "Fake GPU", "cuda", gpu_bf16=False)


def fake(monkeypatch, hw: Hardware) -> None:
    monkeypatch.setattr(hardware, "_detect", lambda device_type, index: hw)


@pytest.mark.parametrize("hw, auto", [
    (AMD, DecodePlan("int8", "bf16", INT8, "native")),  # fast bf16 GEMMs, FBGEMM int8 steps faster still
    (INTEL, DecodePlan("int8", "int8", INT8, "native")),  # bf16 at half the fp32 rate: nothing in bf16
    (AVX2, DecodePlan("int8", "int8", INT8, "native")),  # the native step's AVX2 build over the int8 cache
    (AMX, DecodePlan("bf16", "bf16", BF16)),
    (BASELINE, DecodePlan("fp32", "fp32", FP32)),
    (GPU, DecodePlan("bf16", "bf16", BF16, "cuda_graph", autocast=True)),
    (OLD_GPU, DecodePlan("fp32", "fp32", FP32, "cuda_graph")),
])
def test_auto_plan_per_hardware(monkeypatch, hw, auto):
    fake(monkeypatch, hw)
    assert resolve("auto", hw.device).decode == auto
    assert resolve("fp32", hw.device).decode.step == "fp32" and resolve("fp32", hw.device).decode.cache == FP32


def test_explicit_precisions_follow_the_hardware_for_the_other_phases():
    assert decode_plan("int8", AMD) == DecodePlan("int8", "bf16", INT8, "native")
    assert decode_plan("bf16", AMD) == DecodePlan("bf16", "bf16", BF16)
    assert decode_plan("int8", INTEL) == DecodePlan("int8", "int8", INT8, "native")
    assert decode_plan("bf16", INTEL) == DecodePlan("bf16", "fp32", BF16)
    assert decode_plan("int8", BASELINE) == DecodePlan("int8", "int8", INT8, "native")  # asked for: portable C
    assert decode_plan("int8", GPU) == DecodePlan("fp32", "fp32", FP32, "cuda_graph")  # no int8 kernels on GPUs


@pytest.mark.parametrize("hw", [AMD, INTEL, AVX2, AMX, BASELINE, GPU, OLD_GPU])
def test_resolve_gives_every_part_its_setting(monkeypatch, hw):
    fake(monkeypatch, hw)
    choice = choose(hw)
    auto = resolve("auto", hw.device)
    assert auto.name == choice.decode and auto.train == choice.train
    assert auto.first_stage == ("bf16" if choice.first_stage == BF16 else "channels_last")
    assert (resolve("fp32").first_stage, resolve("fp32").train, resolve("fp32").name) == ("fp32", "32", "fp32")
    assert (resolve("bf16").first_stage, resolve("bf16").train) == ("bf16", "bf16-mixed")
    assert (resolve("int8").first_stage, resolve("int8").train) == ("channels_last", "32")  # a decoding precision
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, int8, got 'fp16'"):
        resolve("fp16")


def test_plan_on_this_cpu_follows_its_detected_class():
    hw = hardware.detect("cpu")
    plan = resolve("auto", "cpu").decode
    assert plan == decode_plan(choose(hw).decode, hw)
    assert plan.prefill == ("fp32" if plan.step == "fp32" else "bf16" if hw.bf16_fast else plan.step)
    assert plan.cache == {"fp32": FP32, "bf16": BF16, "int8": INT8}[plan.step]
    assert (plan.backend == "native") == (plan.cache == INT8)
    assert "sampling: one-code steps" in precision.summary("cpu") and "auto chooses" in precision.summary("cpu")


def test_a_forced_class_plans_as_that_cpu(monkeypatch):
    """TAMING_CPU_ISA=avx2 on this project's AMD AVX512-BF16 CPU: the decisions of an AVX2 CPU, and the
    summary names both classes."""
    fake(monkeypatch, Hardware("cpu", "AMD EPYC", "avx2", vendor="AuthenticAMD", machine_isa="avx512_bf16"))
    assert choose(hardware.detect("cpu")) == choose(AVX2)
    assert resolve("auto", "cpu").decode == decode_plan("int8", AVX2) == DecodePlan("int8", "int8", INT8, "native")
    assert "ISA avx2 (as TAMING_CPU_ISA asks; this CPU: avx512_bf16)" in precision.summary("cpu")


def test_one_flag_for_every_command():
    from taming.cli import eval as eval_cli, first_stage_args, sample_scene
    from taming.cli.demo import build_parser as demo_parser
    from taming.cli.sample import build_parser as sample_parser
    from taming.cli.tokenize import build_parser as tokenize_parser

    parsers = [sample_parser(), first_stage_args.build_parser("encode", "", True), sample_scene.build_parser(),
               demo_parser(), tokenize_parser()]
    parsers += [a for a in eval_cli.build_parser()._subparsers._group_actions[0].choices.values()
                if any(o.dest == "precision" for o in a._actions)]
    assert len(parsers) == 7
    for p in parsers:
        (action,) = [a for a in p._actions if a.dest == "precision"]
        assert tuple(action.choices) == PRECISIONS and action.default == "auto" and action.help == precision.FLAG_HELP
    bad = argparse.ArgumentParser(exit_on_error=False)
    precision.add_flag(bad)
    with pytest.raises(argparse.ArgumentError):
        bad.parse_args(["--precision", "fp16"])


def test_auto_in_sampling_the_first_stage_and_training(monkeypatch):
    from taming.sampling import generate
    from taming.tokenizer.vqgan import VQGAN
    from taming.training.trainer import TrainOptions, trainer_kwargs
    from taming.transformer.gpt import GPT

    gpt = GPT(16, 8, n_layer=1, n_head=2, n_embd=16).eval()
    ddconfig = dict(double_z=False, z_channels=4, resolution=16, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 2],
                    num_res_blocks=1, attn_resolutions=[], dropout=0.0)
    expected = choose(hardware.detect("cpu"))
    assert generate(gpt, torch.randint(0, 16, (2, 3)), 4, greedy=True, precision="auto").shape == (2, 4)
    vq = precision.prepare_first_stage(VQGAN(ddconfig, 8, 4), "auto")
    assert vq.decoder.conv_out.weight.dtype == (expected.first_stage or FP32)
    assert vq.decoder.conv_out.weight.is_contiguous(memory_format=torch.channels_last)
    kw = trainer_kwargs(OmegaConf.create(), TrainOptions(accelerator="cpu", precision="auto"))
    assert kw["precision"] == expected.train

    fake(monkeypatch, AMX)  # the same calls on an AMX CPU pick bf16 everywhere
    assert resolve("auto", "cpu").name == "bf16"
    assert precision.prepare_first_stage(VQGAN(ddconfig, 8, 4), "auto").decoder.conv_out.weight.dtype == BF16
    assert trainer_kwargs(OmegaConf.create(), TrainOptions(accelerator="cpu", precision="auto"))["precision"] \
        == "bf16-mixed"
