"""The run folder of `taming train`: a new `logs/<now>_<name><postfix>`, or the one being resumed
(and its checkpoint and saved configs)."""
from __future__ import annotations

import datetime
import glob
import os
from dataclasses import dataclass
from pathlib import Path

from taming.config import ConfigError
from taming.training.options import TrainOptions
from taming.training.resume import launched_worker, pick_resume_checkpoint

RUN_NOW_ENV = "TAMING_RUN_NOW"  # rank 0's timestamp, inherited by the DDP processes Lightning launches


@dataclass
class RunPaths:
    now: str
    nowname: str
    logdir: Path
    ckptdir: Path
    cfgdir: Path
    resume_ckpt: Path | None
    configs: list[str]


def run_timestamp() -> str:
    """One timestamp per run, shared with the worker processes a DDP launch starts."""
    now = os.environ.get(RUN_NOW_ENV) if launched_worker() else None
    now = now or datetime.datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    os.environ[RUN_NOW_ENV] = now
    return now


def resolve_paths(opts: TrainOptions) -> RunPaths:
    """The run folder: new `logs/<now>_<name><postfix>`, or the one being resumed."""
    now = run_timestamp()
    if opts.name and opts.resume:
        raise ConfigError("-n/--name and -r/--resume cannot be given together; to resume into a new run "
                          "folder, start a new run with --name and resume_from_checkpoint in lightning.trainer")
    configs = list(opts.base)
    resume_ckpt = None
    if opts.resume:
        target = Path(opts.resume)
        if not target.exists():
            raise ConfigError(f"--resume: cannot find {target}")
        if target.is_file():  # logs/<run>/checkpoints/<file>.ckpt
            logdir, resume_ckpt = target.resolve().parent.parent, pick_resume_checkpoint(target)
        else:
            logdir = target.resolve()
            if not (logdir / "checkpoints").is_dir():
                raise ConfigError(f"--resume: run folder {logdir} has no checkpoints/ folder")
            resume_ckpt = pick_resume_checkpoint(logdir / "checkpoints" / "last.ckpt")  # or the newest valid one
        configs = sorted(glob.glob(str(logdir / "configs" / "*.yaml"))) + configs
        nowname = logdir.name
    else:
        if opts.name:
            name = "_" + opts.name
        elif opts.base:
            name = "_" + Path(opts.base[0]).stem
        else:
            name = ""
        nowname = now + name + opts.postfix
        logdir = Path(opts.logdir) / nowname
    if not configs:
        raise ConfigError("no config given: pass -b/--base CONFIG.yaml (or -r/--resume a run folder)")
    return RunPaths(now, nowname, logdir, logdir / "checkpoints", logdir / "configs", resume_ckpt, configs)
