"""Sampling, tokenizing and scoring on several processes (taming/distributed.py): 2 CPU processes
(Lightning Fabric, gloo) give what one process gives: the same PNG bytes, the same codes, the same
metrics; a 2-process sampling run killed half way continues on 1 process to the files of an
uninterrupted run. Tiny models the tests make; each 2-process run is a fresh `python -m taming.cli.main`
(Fabric launches its second process from the command line)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taming.cli.main import main
from taming.data.codes import CodeShards
from taming.eval import adm_npz, fidelity
from taming.eval.inception import FIDInceptionV3
from helpers import ROOT, make_run, noisy_images, prefix_config, vqgan_config

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # several processes each: seconds of start-up
LABELATOR = {"target": "taming.modules.util.Labelator", "params": {"n_classes": 5}}


def command(*args: str, devices: int = 2, accelerator: str = "cpu") -> list[str]:
    return [sys.executable, "-m", "taming.cli.main", *args, "--accelerator", accelerator, "--devices", str(devices)]


def environment() -> dict:
    path = [str(ROOT / "tests"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]  # the GPU check's too
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1"}


def processes(*args: str, devices: int = 2, accelerator: str = "cpu") -> str:
    """`taming ARGS --accelerator cpu --devices 2` in fresh processes -> stdout + stderr."""
    r = subprocess.run(command(*args, devices=devices, accelerator=accelerator), cwd=ROOT, env=environment(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert devices == 1 or f"MEMBER: {devices}/{devices}" in r.stdout + r.stderr  # Fabric did start them
    return r.stdout + r.stderr


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny transformer runs (16 px, 8x8 codes, one GPT layer, random weights): class-conditional, unconditional."""
    root = tmp_path_factory.mktemp("runs")
    return {"class": make_run(root / "class", prefix_config(LABELATOR, "class_label"), "cls"),
            "uncond": make_run(root / "uncond", prefix_config("__is_unconditional__", "image"), "uncond")}


def test_sample_on_two_processes_writes_the_bytes_of_one(runs, tmp_path):
    # 3 classes x 3 images in batches of 2: 5 batches, 3 on rank 0 and 2 on rank 1
    flags = ["-r", str(runs["class"]), "-n", "3", "--classes", "0,1,3", "--batch-size", "2", "--top-k", "8",
             "--precision", "fp32"]
    assert main(["sample", *flags, "-o", str(tmp_path / "one"), "--npz", str(tmp_path / "one.npz")]) == 0
    out = processes("sample", *flags, "-o", str(tmp_path / "two"), "--npz", str(tmp_path / "two.npz"))
    one, two = tree(tmp_path / "one" / "samples"), tree(tmp_path / "two" / "samples")
    assert sorted(one) == sorted(f"{c}/{i:06d}.png" for c in (0, 1, 3) for i in range(3))
    assert one == two
    assert (tmp_path / "one" / "grid.png").read_bytes() == (tmp_path / "two" / "grid.png").read_bytes()
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    # ADM's format: arr_0 uint8 (N, H, W, 3) in the plan's order, arr_1 the labels
    with np.load(tmp_path / "two.npz") as npz:
        assert sorted(npz.files) == ["arr_0", "arr_1"]
        images, labels = npz["arr_0"], npz["arr_1"]
    assert images.dtype == np.uint8 and images.shape == (9, 16, 16, 3)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 3, 3, 3]
    np.testing.assert_array_equal(images[4], np.asarray(Image.open(tmp_path / "two" / "samples" / "1" / "000001.png")))
    settings = json.loads((tmp_path / "two" / "settings.json").read_text())
    assert settings["written_now"] == 9 and [p["rank"] for p in settings["processes"]] == [0, 1]
    assert [p["made"] for p in settings["processes"]] == [5, 4]  # batches 0, 2, 4 (2 + 2 + 1) and 1, 3
    assert settings["images_per_s"] > 0 and out.count("9 samples in") == 1  # rank 0 alone reports


def test_a_two_process_run_killed_half_way_continues_on_one(runs, tmp_path):
    n = 40
    flags = ["-r", str(runs["uncond"]), "-n", str(n), "--batch-size", "1", "--top-k", "8", "--precision", "fp32"]
    stopped = tmp_path / "stopped"
    with open(tmp_path / "log.txt", "w") as log:
        proc = subprocess.Popen(command("sample", *flags, "-o", str(stopped)), cwd=ROOT, env=environment(),
                                stdout=log, stderr=log, start_new_session=True)  # its own group: both ranks
        try:
            deadline = time.monotonic() + 240
            while len(list((stopped / "samples").glob("*.png"))) < 6:
                assert proc.poll() is None, (tmp_path / "log.txt").read_text()[-3000:]
                assert time.monotonic() < deadline
                time.sleep(0.005)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    written = {p.name for p in (stopped / "samples").glob("*.png")}
    assert 6 <= len(written) < n, "the run ended before it was stopped"
    assert not (stopped / "settings.json").exists()
    # in lock step, neither process is more than one image ahead: both wrote their first three
    assert {f"{i:06d}.png" for i in range(6)} <= written
    assert main(["sample", *flags, "-o", str(stopped)]) == 0  # one process continues
    assert main(["sample", *flags, "-o", str(tmp_path / "whole")]) == 0  # one uninterrupted run
    assert tree(stopped / "samples") == tree(tmp_path / "whole" / "samples")  # no .part left, none missing
    settings = json.loads((stopped / "settings.json").read_text())
    assert settings["already_written"] == len(written) and settings["written_now"] == n - len(written)


def shard_codes(out: Path) -> dict[str, tuple]:
    manifest = json.loads((out / "manifest.json").read_text())
    codes = {}
    for split, entry in manifest["splits"].items():
        samples = list(CodeShards([str(out / s) for s in entry["shards"]], shuffle=0))
        assert len(samples) == entry["samples"]
        for s in samples:
            codes[f"{split}/{s['__key__']}"] = (s["z_indices"].tolist(), s.get("c_indices"))
    return codes


def test_tokenize_on_two_processes_stores_the_codes_of_one(tmp_path):
    run = make_run(tmp_path, vqgan_config(16, train_len=5, batch=2), "vq")
    config, ckpt = next((run / "configs").glob("*.yaml")), run / "checkpoints" / "last.ckpt"
    flags = ["--config", str(config), "--ckpt", str(ckpt), "--flip", "--crops", "1", "--crop-size", "8",
             "--shard-size", "4", "--precision", "fp32"]
    assert main(["tokenize", *flags, "--out", str(tmp_path / "one")]) == 0
    processes("tokenize", *flags, "--out", str(tmp_path / "two"))
    one, two = shard_codes(tmp_path / "one"), shard_codes(tmp_path / "two")
    # 5 train images (batches of 2, 2, 1) and 2 validation ones, x (orig, flip, crop0, crop0_flip)
    assert len(one) == 7 * 4 and one == two
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest["splits"]["train"]["images"] == 5
    shards = sorted(s for entry in manifest["splits"].values() for s in entry["shards"])
    assert shards == sorted(p.name for p in (tmp_path / "two").glob("*.tar"))  # every shard, each listed once
    assert any("-r000-" in s for s in shards) and any("-r001-" in s for s in shards)
    urls = yaml_urls(tmp_path / "two" / "data.yaml")
    assert sorted(Path(u).name for u in urls) == shards


def yaml_urls(path: Path) -> list[str]:
    from omegaconf import OmegaConf

    params = OmegaConf.load(path).data.params
    return [u for split in ("train", "validation") for u in params[split].params.urls]


def test_eval_on_two_processes_gives_the_numbers_of_one(tmp_path, monkeypatch):
    torch.manual_seed(1)
    weights = tmp_path / "inception.pth"
    torch.save(FIDInceptionV3().state_dict(), weights)
    monkeypatch.setenv("TAMING_INCEPTION", str(weights))
    real, fake = noisy_images(tmp_path / "real", 8, 0), noisy_images(tmp_path / "fake", 7, 1)
    fake_npz = adm_npz.write_images(tmp_path / "fake.npz", sorted(fake.iterdir()))
    flags = ["--real", str(real), "--metrics", "fid,kid,isc,prc", "--prc-features", "inception",
             "--isc-splits", "2", "--kid-subsets", "3", "--batch-size", "3"]  # 3 + 3 chunks: 2 and 1 per process
    assert main(["eval", "samples", *flags, "--fake", str(fake), "--json", str(tmp_path / "one.json")]) == 0
    processes("eval", "samples", *flags, "--fake", str(fake_npz), "--json", str(tmp_path / "two.json"))
    one, two = (json.loads((tmp_path / f"{k}.json").read_text()) for k in ("one", "two"))
    assert one.keys() == two.keys() and one["images_fake"] == 7 and one["images_real"] == 8
    for key in (fidelity.FID, fidelity.KID_MEAN, fidelity.ISC_MEAN, fidelity.PRECISION, fidelity.RECALL):
        assert two[key] == pytest.approx(one[key], rel=1e-6, abs=1e-9), key
    assert one[fidelity.FID] > 0

    # reconstruction: batches of 3 and 2 of the 5 training images, one per process
    run = make_run(tmp_path, vqgan_config(16, train_len=5), "vq")
    flags = ["-r", str(run), "--split", "train", "--batch-size", "3", "--precision", "fp32"]
    assert main(["eval", "reconstruction", *flags, "--json", str(tmp_path / "rec1.json")]) == 0
    processes("eval", "reconstruction", *flags, "--json", str(tmp_path / "rec2.json"))
    one, two = (json.loads((tmp_path / f"rec{k}.json").read_text()) for k in (1, 2))
    assert one["images"] == two["images"] == 5 and "rfid" in one
    for key in ("psnr", "ssim", "rfid", "codes_used", "perplexity"):
        assert two[key] == pytest.approx(one[key], rel=1e-6), key


def test_adm_npz_batches_are_read_as_written(tmp_path, capsys):
    folder = noisy_images(tmp_path / "images", 3, 2, size=8)
    files = sorted(folder.iterdir())
    pixels = np.stack([np.asarray(Image.open(f)) for f in files])
    written = adm_npz.write_images(tmp_path / "ours.npz", files, [4, 0, 2])
    with np.load(written) as npz:  # what ADM's evaluator does: np.load(path)["arr_0"]
        np.testing.assert_array_equal(npz["arr_0"], pixels)
        assert npz["arr_1"].tolist() == [4, 0, 2]
    np.savez(tmp_path / "plain.npz", arr_0=pixels, mu=np.zeros(2))  # ADM's own reference batches hold both
    np.savez_compressed(tmp_path / "packed.npz", arr_0=pixels)
    for name in ("ours", "plain", "packed"):
        np.testing.assert_array_equal(adm_npz.read_images(tmp_path / f"{name}.npz"), pixels)
    assert isinstance(adm_npz.read_images(written), np.memmap)  # stored: mapped, not loaded
    np.savez(tmp_path / "stats.npz", mu=np.zeros(2), sigma=np.eye(2))
    np.savez(tmp_path / "floats.npz", arr_0=pixels.astype(np.float32))
    for real, fake, why in ((folder, tmp_path / "stats.npz", "holds FID statistics, not images"),
                            (folder, tmp_path / "floats.npz", "not uint8 (N, H, W, 3)")):
        assert main(["eval", "samples", "--real", str(real), "--fake", str(fake)]) == 2
        assert why in capsys.readouterr().err


def test_launchers_are_picked_up_from_the_environment(monkeypatch):
    from argparse import Namespace

    from taming.distributed import _launcher_shape, wanted

    for var in ("TORCHELASTIC_RUN_ID", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_NTASKS_PER_NODE"):
        monkeypatch.delenv(var, raising=False)
    plain = Namespace(accelerator=None, devices=None, num_nodes=None)
    assert not wanted(plain) and wanted(Namespace(accelerator=None, devices="2", num_nodes=None))
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4")
    monkeypatch.setenv("SLURM_NNODES", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # an salloc shell: one plain process
    assert not wanted(plain)
    monkeypatch.setenv("SLURM_JOB_NAME", "sample")  # srun's tasks: Fabric, 4 per node on 2 nodes
    assert wanted(plain) and _launcher_shape() == (4, 2)
    for var in ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")  # torchrun --nnodes 2 --nproc_per_node 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    monkeypatch.setenv("WORLD_SIZE", "6")
    assert wanted(plain) and _launcher_shape() == (3, 2)


def test_device_flags_errors_are_one_line(runs, tmp_path, capsys):
    assert main(["sample", "-r", str(runs["uncond"]), "-n", "1", "-o", str(tmp_path), "--device", "cpu",
                 "--devices", "2"]) == 2
    assert "--device names one device" in capsys.readouterr().err


@pytest.mark.multigpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices (benchmarks/gpu_check.sh)")
def test_sample_on_two_gpus_writes_the_bytes_of_one(runs, tmp_path):
    flags = ["-r", str(runs["class"]), "-n", "3", "--classes", "0,1,3", "--batch-size", "2", "--top-k", "8",
             "--precision", "fp32"]
    assert main(["sample", *flags, "-o", str(tmp_path / "one"), "--accelerator", "gpu", "--devices", "1"]) == 0
    processes("sample", *flags, "-o", str(tmp_path / "two"), devices=2, accelerator="gpu")
    assert tree(tmp_path / "one" / "samples") == tree(tmp_path / "two" / "samples")
