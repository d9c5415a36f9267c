"""Where a training step's time goes: the side-by-side training workloads under torch.profiler.

The steps are those of bench_vs_original.py (faceshq VQGAN G + D step with LPIPS, batch 1, 256 px;
the 26.5M GPT's step on 4 x 511 codes), profiled after one warm-up step. Prints, per part of the
model, the forward and backward CPU time (backward ops are traced to the forward op that made them
through the autograd sequence number) and the optimizer steps, with the part's GFLOP
(torch.utils.flop_counter) and rate; then the ops with the most self time.

    python benchmarks/profile_training.py [--cases vqgan,gpt] [--precision fp32|bf16] [--threads 2] [--ops 15]
        [--shapes 12]

--shapes N adds the N costliest (op, input shapes) pairs among the matmuls, convolutions and
attention, as shares of the step. On a shared machine profile with --threads 1: a descheduled
thread stretches every parallel op's wall time, the short elementwise ones most.

Force a lower CPU class with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2.
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

OPTIMIZER = "optimizer"


def label_forwards(parts: dict[str, torch.nn.Module]) -> None:
    """Run each part's forward inside a profiler range named after the part."""
    for name, module in parts.items():
        def wrapped(*args, __f=module.forward, __name=name, **kwargs):
            with record_function(f"part:{__name}"):
                return __f(*args, **kwargs)
        module.forward = wrapped


def vqgan_step(precision: str, layout: str):
    from bench_first_stage import train_step_fn
    from workloads import image

    from taming.training.first_stage import channels_last_training

    channels_last = channels_last_training("cpu") if layout == "auto" else layout == "cl"
    step = train_step_fn(image("cpu"), precision == "bf16", channels_last)
    print(f"layout: {'channels_last' if channels_last else 'NCHW'}")
    model = step.model
    loss = model.loss
    parts = {"encoder": model.encoder, "decoder": model.decoder, "quantizer": model.quantize,
             "lpips": loss.perceptual_loss, "discriminator": loss.discriminator}
    return step, parts


def gpt_step(precision: str, layout: str):
    from bench_vs_original import second_stage_fn
    from taming.hardware import choose, detect

    step = second_stage_fn("gpt_train", "cpu", 4, precision, choose(detect("cpu")))
    gpt = step.gpt
    parts = {"embedding": gpt.tok_emb, "head": gpt.head, "ln_f": gpt.ln_f}
    for block in gpt.blocks:
        parts[f"attention#{id(block)}"] = block.attn
        parts[f"mlp#{id(block)}"] = block.mlp
        parts[f"layernorm#{id(block)}"] = block.ln1
        parts[f"layernorm2#{id(block)}"] = block.ln2
    return step, parts


def part_of(name: str) -> str:
    return name.split("#")[0].rstrip("2")


def attribute(events) -> tuple[dict, dict]:
    """(part -> forward us, part -> backward us): the top-level ops inside each part's range on the
    main thread are its forward; autograd nodes whose sequence number a part's op made are its
    backward; the rest is 'other' (loss arithmetic, the adaptive weight's glue)."""
    fwd, bwd = collections.Counter(), collections.Counter()
    seq_part: dict[tuple[int, int], str] = {}

    def part_range(e):
        p = e.cpu_parent
        while p is not None:
            if p.name.startswith("part:"):
                return part_of(p.name[5:])
            p = p.cpu_parent
        return None

    for e in events:
        if e.name.startswith("part:") or e.name.startswith("autograd::engine"):
            continue
        if e.sequence_nr >= 0:
            seq_part.setdefault((e.thread, e.sequence_nr), part_range(e) or "other")
    for e in events:
        if e.name.startswith("part:"):
            p = e.cpu_parent  # nested parts count once, in the outermost
            while p is not None and not p.name.startswith("part:"):
                p = p.cpu_parent
            if p is None:
                fwd[part_of(e.name[5:])] += e.cpu_time_total
        elif e.name.startswith("autograd::engine::evaluate_function"):
            part = seq_part.get((e.fwd_thread, e.sequence_nr), "other")
            bwd[part] += e.cpu_time_total
        elif e.name.startswith("Optimizer.step"):
            fwd[OPTIMIZER] += e.cpu_time_total
    return fwd, bwd


HEAVY = ("conv", "mm", "addmm", "bmm", "attention")


def print_shapes(prof, total: float, n: int) -> None:
    """The n costliest heavy ops by input shapes (self time, share of the profiled step)."""
    rows = [e for e in prof.key_averages(group_by_input_shape=True)
            if any(h in e.key.removeprefix("aten::") for h in HEAVY) and not e.key.startswith("autograd")]
    rows.sort(key=lambda e: -e.self_cpu_time_total)
    print(f"{'op':48}{'calls':>6}{'self s':>9}{'share':>7}  input shapes")
    for e in rows[:n]:
        print(f"{e.key[:48]:48}{e.count:>6}{e.self_cpu_time_total / 1e6:>9.3f}"
              f"{100 * e.self_cpu_time_total / total:>6.1f}%  {str(e.input_shapes[:2])[:70]}")


def run_case(case: str, precision: str, layout: str, threads: int, n_ops: int, n_shapes: int = 0) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    step, parts = (vqgan_step if case == "vqgan" else gpt_step)(precision, layout)
    label_forwards(parts)
    step()  # warm-up
    t0 = time.perf_counter()
    step()
    plain = time.perf_counter() - t0
    with profile(activities=[ProfilerActivity.CPU], record_shapes=n_shapes > 0) as prof:
        step()
    events = prof.events()
    fwd, bwd = attribute(events)
    total = sum(e.cpu_time_total for e in events if e.cpu_parent is None and e.thread == events[0].thread) or 1
    print(f"\n== {case} step, {precision}, {threads} threads: {plain:.3f} s unprofiled; "
          f"{torch.backends.cpu.get_cpu_capability()} kernels ==")
    print(f"{'part':16}{'forward s':>11}{'backward s':>12}{'share':>8}")
    keys = sorted(set(fwd) | set(bwd), key=lambda k: -(fwd[k] + bwd[k]))
    for k in keys:
        print(f"{k:16}{fwd[k] / 1e6:>11.3f}{bwd[k] / 1e6:>12.3f}{100 * (fwd[k] + bwd[k]) / total:>7.0f}%")
    print(f"{'(profiled step)':16}{total / 1e6:>23.3f}")
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=n_ops,
                                      max_name_column_width=60)
    print(table)
    if n_shapes:
        print_shapes(prof, total, n_shapes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="vqgan,gpt")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--layout", default="auto", choices=("auto", "nchw", "cl"),
                    help="auto: as training chooses it (taming.training.first_stage.channels_last_training)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ops", type=int, default=15)
    ap.add_argument("--shapes", type=int, default=0, help="also the N costliest heavy ops by input shapes")
    args = ap.parse_args()
    from taming.precision import summary

    print(summary("cpu"))
    for case in args.cases.split(","):
        run_case(case, args.precision, args.layout, args.threads, args.ops, args.shapes)


if __name__ == "__main__":
    main()
