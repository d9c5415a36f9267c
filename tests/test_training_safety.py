"""No lost work: atomic checkpoint writes (SIGKILL mid-save), resume fallback, signals, NaN losses.

Real training processes, tiny models; each subprocess costs ~10 s of imports on a busy machine.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from taming.checkpoint import TEMP_MARK, checkpoint_problem, read_checkpoint
from taming.cli.main import main
from helpers import QUIET, ROOT, only_run, vqgan_config, write_config

pytestmark = pytest.mark.slow  # real training processes

PERIODIC = {"params": {"every_n_train_steps": 1}}  # a checkpoint after every batch
# Slows the write of last.ckpt from step 3 on, so the test can kill the process in the middle of it.
SLOW_LAST_WRITE = """
import io, os, time, torch
import taming.training.checkpoint_io as cio
_write = cio._write
def slow(checkpoint, path):
    if not (path.name.startswith('.last.ckpt') and checkpoint['global_step'] >= 3):
        return _write(checkpoint, path)
    buf = io.BytesIO(); torch.save(checkpoint, buf); data = buf.getvalue()
    with open(path, 'wb') as f:
        f.write(data[: len(data) // 2]); f.flush(); os.fsync(f.fileno())
        print('SLOW-WRITE', flush=True)
        time.sleep(600)
cio._write = slow
"""


def config(tmp_path: Path, **model) -> Path:
    cfg = vqgan_config(callbacks={"image_logger": None}, modelcheckpoint=PERIODIC)
    cfg["model"].update(model)
    return write_config(tmp_path / "tiny.yaml", cfg)


def start(cfg: Path, logdir: Path, prelude: str = "") -> tuple[subprocess.Popen, Path]:
    out = logdir.parent / f"{logdir.name}.out"
    script = prelude + "\nimport sys\nfrom taming.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", script, "train", "-b", str(cfg), "-t", "--no-test", "--accelerator", "cpu",
           "--max_steps", "100000", "-l", str(logdir)]
    return subprocess.Popen(cmd, env=env, stdout=out.open("w"), stderr=subprocess.STDOUT, cwd=ROOT), out


def wait_for(condition, proc: subprocess.Popen | None, out: Path, timeout: float = 240) -> None:
    """Poll `condition`; fail if `proc` (when given) ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"exited {proc.returncode} early:\n{out.read_text()[-3000:]}"
        assert time.monotonic() < deadline, out.read_text()[-3000:]
        time.sleep(0.2)


def periodic_checkpoints(logdir: Path) -> list[Path]:
    return sorted(logdir.glob("*/checkpoints/epoch=*.ckpt")) if logdir.exists() else []


def temp_files(run: Path) -> list[Path]:
    return list((run / "checkpoints").glob(f"*{TEMP_MARK}*"))


def ours(capsys) -> list[str]:
    """Our stderr lines (Lightning's own warnings may come before them), after checking there is no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("taming ")]


def resume(run: Path, steps: int) -> int:
    return main(["train", "-r", str(run), "-t", "--no-test", "--accelerator", "cpu", "--max_steps", str(steps)])


def test_sigkill_in_the_middle_of_a_save_loses_nothing_and_leaves_no_temp_file(tmp_path):
    logdir = tmp_path / "logs"
    proc, out = start(config(tmp_path), logdir, prelude=SLOW_LAST_WRITE)
    wait_for(lambda: "SLOW-WRITE" in out.read_text(), proc, out)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    run = only_run(logdir)
    assert len(temp_files(run)) == 1  # the half-written file is a temp beside last.ckpt ...
    last = run / "checkpoints" / "last.ckpt"
    assert checkpoint_problem(last) is None and read_checkpoint(last)["global_step"] == 2  # ... which is whole
    assert resume(run, 5) == 0
    assert read_checkpoint(last)["global_step"] == 5
    assert temp_files(run) == []  # swept


def test_sigterm_saves_last_ckpt_and_exits_143(tmp_path):
    logdir = tmp_path / "logs"
    proc, out = start(config(tmp_path), logdir)
    wait_for(lambda: len(periodic_checkpoints(logdir)) >= 2, proc, out)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, out.read_text()[-3000:]
    run = only_run(logdir)
    step = read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"]
    newest = max(read_checkpoint(p)["global_step"] for p in periodic_checkpoints(logdir))
    assert step >= newest >= 2  # written at the signal, not an older periodic copy
    assert f"SIGTERM: saved {run / 'checkpoints' / 'last.ckpt'} at step {step}; exiting with status 143" \
        in out.read_text()
    assert temp_files(run) == []


def test_sigusr1_saves_and_continues_then_sigint_saves_and_exits_130(tmp_path):
    logdir = tmp_path / "logs"
    proc, out = start(config(tmp_path), logdir)
    wait_for(lambda: len(periodic_checkpoints(logdir)) >= 1, proc, out)
    proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "SIGUSR1: saved" in out.read_text(), proc, out)
    assert "; continuing" in out.read_text()
    n = len(periodic_checkpoints(logdir))
    wait_for(lambda: len(periodic_checkpoints(logdir)) > n, proc, out)  # still training
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, out.read_text()[-3000:]
    assert "SIGINT: saved" in out.read_text() and "exiting with status 130" in out.read_text()
    assert checkpoint_problem(only_run(logdir) / "checkpoints" / "last.ckpt") is None


def test_non_finite_loss_stops_with_the_step_and_term_and_keeps_the_good_checkpoint(tmp_path, capsys):
    cfg = config(tmp_path, base_learning_rate=1.0e6)
    assert main(["train", "-b", str(cfg), "-t", "--no-test", "--accelerator", "cpu", "--max_steps", "30",
                 "-l", str(tmp_path / "logs")]) == 2
    err = ours(capsys)
    run = only_run(tmp_path / "logs")
    assert len(err) == 1 and err[0].startswith("taming train: error: non-finite loss at step 2 (epoch 0, batch 1): "
                                               "train/aeloss = nan"), err
    assert f"the last good checkpoint is kept: {run / 'checkpoints' / 'last.ckpt'}" in err[0]
    last = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 1
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_terminate_on_nan_maps_onto_the_guard(tmp_path, capsys):
    from omegaconf import OmegaConf
    from taming.training.trainer import TrainOptions, trainer_kwargs

    kw = trainer_kwargs(OmegaConf.create({"trainer": {"terminate_on_nan": False}}), TrainOptions())
    assert kw["terminate_on_nan"] is False  # no longer dropped: build_job turns the guard off
    cfg = config(tmp_path, base_learning_rate=1.0e6)
    assert main(["train", "-b", str(cfg), "-t", "--no-test", "--accelerator", "cpu", "--max_steps", "3",
                 "-l", str(tmp_path / "logs"), "lightning.trainer.terminate_on_nan=false"]) == 2
    err = ours(capsys)
    # without the guard the NaN weights reach the checkpoint writer, which refuses them
    assert len(err) == 1 and "is not finite" in err[0] and "not writing" in err[0], err
    assert main(["train", "-b", str(cfg), "-l", str(tmp_path / "x"), "lightning.trainer.terminate_on_nan=maybe"]) == 2
    assert "lightning.trainer.terminate_on_nan: expected true or false, got 'maybe'" in capsys.readouterr().err


def test_a_run_stopped_by_max_steps_leaves_its_final_weights_in_last_ckpt(tmp_path):
    """Validation (and so ModelCheckpoint's last.ckpt) every 2 batches of a long epoch, stopped in between."""
    from taming.training.trainer import TrainOptions, run

    cfg = write_config(tmp_path / "t.yaml", vqgan_config(train_len=40, callbacks={"image_logger": None}, trainer={
        "val_check_interval": 2, "check_val_every_n_epoch": None}))
    job = run(TrainOptions(base=[str(cfg)], train=True, no_test=True, accelerator="cpu", max_steps=5,
                           logdir=str(tmp_path / "logs")))
    last = read_checkpoint(job.paths.ckptdir / "last.ckpt")
    assert last["global_step"] == job.trainer.global_step > 0
    weights = job.model.state_dict()
    assert all(torch.equal(last["state_dict"][k], weights[k]) for k in last["state_dict"])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    cfg = config(tmp)
    assert main(["train", "-b", str(cfg), "-t", "--no-test", "--accelerator", "cpu", "--max_steps", "3",
                 "-l", str(tmp / "logs")]) == 0
    return only_run(tmp / "logs")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_resume_falls_back_from_a_corrupt_last_ckpt(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / trained_run.name
    shutil.copytree(trained_run, run)
    truncate(run / "checkpoints" / "last.ckpt")
    (run / "checkpoints" / f".last.ckpt{TEMP_MARK}999999999").write_bytes(b"half")  # a dead writer's leftover
    assert resume(run, 4) == 0
    out = capsys.readouterr().out
    assert f"resume: {run / 'checkpoints' / 'last.ckpt'} is damaged" in out
    assert "continuing from the newest complete checkpoint" in out and "step=000000003.ckpt" in out
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 4
    assert temp_files(run) == []


def test_resume_without_any_valid_checkpoint_stops_with_one_line(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / trained_run.name
    shutil.copytree(trained_run, run)
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        truncate(ckpt)
    assert resume(run, 4) == 2
    err = ours(capsys)
    assert len(err) == 1 and "holds no other complete checkpoint" in err[0], err
    one = sorted((run / "checkpoints").glob("epoch=*.ckpt"))[0]
    assert resume(one, 4) == 2  # a named damaged file: no guessing, one line
    err = ours(capsys)
    assert len(err) == 1 and f"--resume: checkpoint {one} is damaged" in err[0], err


def test_sigterm_under_ddp_every_rank_stops_and_rank_0_writes(tmp_path):
    """Two CPU processes (gloo); the scheduler signals the launching process (rank 0) only."""
    # TinyGAN: the VQGAN's training structure without its size (tests/test_training_engine.py)
    cfg = {"model": {"base_learning_rate": 0.02, "target": "test_training_engine.TinyGAN"},
           "data": {"target": "main.DataModuleFromConfig", "params": {"batch_size": 2, "num_workers": 0, "train": {
               "target": "taming.data.landscapes.LandscapesTrain", "params": {"size": 8, "length": 12}}}},
           "lightning": {"trainer": QUIET, "callbacks": {"image_logger": None}, "modelcheckpoint": PERIODIC}}
    path = write_config(tmp_path / "ddp.yaml", cfg)
    logdir = tmp_path / "logs"
    out = logdir.parent / "ddp.out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "taming.cli.main", "train", "-b", str(path), "-t", "--no-test", "--accelerator", "cpu",
           "--strategy", "ddp", "--devices", "2", "--allow-import", "test_training_engine", "--max_steps", "100000",
           "-l", str(logdir)]
    proc = subprocess.Popen(cmd, env=env, stdout=out.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
    wait_for(lambda: len(periodic_checkpoints(logdir)) >= 2, proc, out)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, out.read_text()[-3000:]
    wait_for(lambda: not _processes_mentioning(str(logdir)), None, out, timeout=60)  # rank 1 ended too
    run = only_run(logdir)
    text = out.read_text()
    assert text.count("SIGTERM: saved") == 1  # rank 0 reports (and writes) once
    step = read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"]
    assert step >= max(read_checkpoint(p)["global_step"] for p in periodic_checkpoints(logdir))
    assert temp_files(run) == []


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line holds `text` (rank 1 is started with rank 0's arguments)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found
