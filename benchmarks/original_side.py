"""One workload of benchmarks/workloads.py run by the ORIGINAL Taming Transformers code.

Runs in the original's own virtual environment (see ../shared/oracle/README.md), started by
bench_vs_original.py from a folder without a `taming` package; nothing here is imported by the
project. Prints one `RESULT {json}` line.

    ORIG_VENV/bin/python benchmarks/original_side.py CASE --device cpu --batch 4 --repeats 3
"""
from __future__ import annotations

import argparse
import sys

import torch

from workloads import GPT_DIMS, SHARED, STEPS, TOP_K, VQGAN_CONFIG, COND, cond_codes, emit, image, timed, train_codes

HARNESS = SHARED / "oracle" / "harness"


def vqmodel(device: str):
    from omegaconf import OmegaConf
    from taming.models.vqgan import VQModel

    model = VQModel(**OmegaConf.load(VQGAN_CONFIG).model.params).to(device)
    model.learning_rate = 4.5e-6
    return model


def gpt(device: str):
    from taming.modules.transformer.mingpt import GPT

    return GPT(**GPT_DIMS).to(device)


def case_fn(case: str, device: str, batch: int):
    if case in ("encode", "decode"):
        model, x = vqmodel(device).eval(), image(device)
        with torch.no_grad():
            quant = model.encode(x)[0]
        if case == "encode":
            return lambda: torch.no_grad()(model.encode)(x)
        return lambda: torch.no_grad()(model.decode)(quant)
    if case == "vqgan_train":
        return vqgan_step(device)
    if case in ("cached", "throughput"):
        from taming.modules.transformer.mingpt import sample_with_past

        model, cond = gpt(device).eval(), cond_codes(batch, device)
        # top_p=1.0: the harness's filter (like transformers') compares top_p with a number
        return lambda: sample_with_past(cond, model, steps=STEPS, sample_logits=True, top_k=TOP_K, top_p=1.0)
    if case == "gpt_train":
        return gpt_step(device)
    raise ValueError(case)


def vqgan_step(device: str):
    """As the original trains under Lightning 1.x: training_step once per optimizer, each with its
    own autoencoder forward; the discriminator is active (global step past disc_start)."""
    model, x = vqmodel(device).train(), image(device)
    (opt_ae, opt_disc), _ = model.configure_optimizers()
    step = disc_start() + 1

    def run():
        for idx, opt in ((0, opt_ae), (1, opt_disc)):
            xrec, qloss = model(x)
            loss, _ = model.loss(qloss, x, xrec, idx, step, last_layer=model.get_last_layer(), split="train")
            opt.zero_grad()
            loss.backward()
            opt.step()
    return run


def disc_start() -> int:
    from omegaconf import OmegaConf

    return OmegaConf.load(VQGAN_CONFIG).model.params.lossconfig.params.disc_start


def gpt_step(device: str):
    """Net2NetTransformer's step: logits of every position, the image-code ones kept, cross-entropy,
    AdamW(0.9, 0.95) with the original's decay groups (same cost as one group)."""
    model, codes = gpt(device).train(), train_codes(device)
    opt = torch.optim.AdamW(model.parameters(), lr=4.5e-6, betas=(0.9, 0.95))

    def run():
        logits, _ = model(codes[:, :-1])
        logits = logits[:, COND - 1:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes[:, COND:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(HARNESS))
    import oracle_env  # noqa: F401  (makes the original importable; must come first)

    torch.manual_seed(0)
    fn = case_fn(args.case, args.device, args.batch)
    emit({"side": "original", "case": args.case, "batch": args.batch, **timed(fn, args.device, args.repeats)})


if __name__ == "__main__":
    main()
