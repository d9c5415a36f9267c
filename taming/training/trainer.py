"""Build and run a training job the way the original main.py did, on Lightning 2.

    opts (parsed by taming.cli.train) -> RunPaths (run folder, resume checkpoint)
    -> config (YAML files + key=value overrides; `lightning:` section split off)
    -> model, data module, L.Trainer with loggers and callbacks -> fit (-> test)

The original configs' `lightning: {trainer:, callbacks:, modelcheckpoint:, logger:}` sections are
honoured; Lightning 1.x trainer keys (gpus, distributed_backend, ...) are translated.
"""
from __future__ import annotations

import datetime
import glob
import inspect
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from taming.cli.allow import apply_allow_import
from taming.config import ConfigError, check_keys, check_types, instantiate_from_config, load_config, to_plain
from taming.training.callbacks import (ImageLogger, ResumeStepFix, SetupCallback, StepTimer,
                                       make_checkpoint_callback)
from taming.training.checkpoint_io import AtomicCheckpointIO
from taming.training.determinism import RandomState
from taming.training.resume import pick_resume_checkpoint
from taming.training.safety import safety_callbacks
from taming.training.sharding import FSDPDataParallel

# Frozen stages (first stage, cond stage, LPIPS) are in eval mode on purpose; Lightning 2 warns
# about every such module at fit start, which only hides the warnings that matter.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
# Our shells override configure_model only to shard under --strategy fsdp; without it the weight
# averaging callback (EMA) works and its warning about sharding does not apply.
# Our training loaders resume mid-epoch themselves (taming.training.determinism.ResumableSampler).
warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")
warnings.filterwarnings("ignore", message=r"You're using the WeightAveraging callback with a model that overrides")

log = logging.getLogger(__name__)


@rank_zero_only
def say(message: str) -> None:
    """Print on the first process only (the original printed these lines)."""
    print(message, flush=True)

# Lightning 1.x trainer keys that no longer exist and change nothing we do: dropped with a note.
OBSOLETE_TRAINER_KEYS = {"weights_summary", "progress_bar_refresh_rate", "flush_logs_every_n_steps",
                         "checkpoint_callback", "log_gpu_memory", "track_grad_norm"}
TRAINER_KEYS = set(inspect.signature(L.Trainer.__init__).parameters) - {"self", "callbacks", "logger"}
RUN_NOW_ENV = "TAMING_RUN_NOW"  # rank 0's timestamp, inherited by the DDP processes Lightning launches


@dataclass
class TrainOptions:
    """What `taming train` parsed (see taming.cli.train for the flags)."""
    base: list[str] = field(default_factory=list)
    train: bool = False
    name: str = ""
    resume: str = ""
    seed: int = 23
    postfix: str = ""
    no_test: bool = False
    project: str | None = None
    debug: bool = False
    logdir: str = "logs"
    gpus: str | None = None
    accelerator: str | None = None
    devices: str | None = None
    num_nodes: int | None = None
    strategy: str | None = None
    precision: str | None = None
    max_steps: int | None = None
    allow_import: list[str] = field(default_factory=list)  # packages config targets may name besides ours
    overrides: list[str] = field(default_factory=list)


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
    now = os.environ.get(RUN_NOW_ENV) if _is_launched_worker() else None
    now = now or datetime.datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    os.environ[RUN_NOW_ENV] = now
    return now


def _is_launched_worker() -> bool:
    return int(os.environ.get("LOCAL_RANK", 0)) > 0 or int(os.environ.get("NODE_RANK", 0)) > 0


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


def parse_gpus(gpus: str | int) -> list[int] | int:
    """The original --gpus "0,1" (device ids, trailing comma allowed) or a count."""
    if isinstance(gpus, int):
        return gpus
    text = str(gpus).strip().strip(",")
    try:
        ids = [int(g) for g in text.split(",") if g.strip() != ""]
    except ValueError:
        raise ConfigError(f"--gpus: expected device ids like '0,1' or '0,', got {gpus!r}") from None
    if "," not in str(gpus) and len(ids) == 1:
        return ids[0]  # a plain number is a count, as in Lightning 1.x
    return ids


def _parse_devices(devices: Any) -> Any:
    if isinstance(devices, str):
        if devices.isdigit() or devices.startswith("-"):
            return int(devices)
        if "," in devices:
            return parse_gpus(devices)
    return devices


def trainer_kwargs(lightning_config: DictConfig, opts: TrainOptions) -> dict[str, Any]:
    """lightning.trainer (Lightning 1.x keys translated) overridden by the command-line flags."""
    cfg = dict(to_plain(lightning_config.get("trainer", None)) or {})
    kw: dict[str, Any] = {}
    for key, value in cfg.items():
        if key in OBSOLETE_TRAINER_KEYS:
            log.info("lightning.trainer.%s is a Lightning 1.x option without effect here; ignored", key)
        elif key == "terminate_on_nan":  # our NonFiniteGuard: on unless the config says false
            if not isinstance(value, bool):
                raise ConfigError(f"lightning.trainer.terminate_on_nan: expected true or false, got {value!r}")
            kw[key] = value
        elif key == "gpus":
            if value not in (None, 0, "", "0"):
                kw["accelerator"], kw["devices"] = "gpu", parse_gpus(value)
        elif key == "distributed_backend":
            kw["strategy"] = value
        elif key == "accelerator" and value in ("ddp", "ddp_spawn", "dp", "ddp2"):
            kw["strategy"] = value
        else:
            kw[key] = value
    check_keys([k for k in kw if k not in ("resume_from_checkpoint", "terminate_on_nan")], TRAINER_KEYS,
               "lightning.trainer")
    check_types(L.Trainer, {k: v for k, v in kw.items() if k in TRAINER_KEYS}, "lightning.trainer")
    if opts.gpus not in (None, ""):
        kw["accelerator"], kw["devices"] = "gpu", parse_gpus(opts.gpus)
    for key in ("accelerator", "devices", "num_nodes", "strategy", "precision", "max_steps"):
        value = getattr(opts, key)
        if value is not None:
            kw[key] = value
    kw["devices"] = _parse_devices(kw.get("devices", 1))
    kw.setdefault("accelerator", "auto")
    if kw.get("strategy") == "fsdp":
        kw["strategy"] = FSDPDataParallel()  # FSDP2, on GPUs and CPUs (taming/training/sharding.py)
    return kw


def _instantiate_callback(name: str, node: Any) -> Any:
    # original targets (main.ImageLogger, pytorch_lightning.callbacks.*) resolve through TARGET_ALIASES
    return instantiate_from_config(to_plain(node), where=f"lightning.callbacks.{name}")


def build_callbacks(paths: RunPaths, config: DictConfig, lightning_config: DictConfig, model: L.LightningModule,
                    resume: bool, progress_bar: bool = True) -> list:
    ckpt_overrides = dict(to_plain(lightning_config.get("modelcheckpoint", None)) or {})
    ckpt_params = dict(ckpt_overrides.pop("params", {}) or {})
    ckpt_overrides.pop("target", None)
    if ckpt_overrides:
        check_keys(ckpt_overrides, [], "lightning.modelcheckpoint")
    every = ckpt_params.pop("every_n_train_steps", None)
    callbacks = {
        "resume_step_fix": ResumeStepFix(),  # first: other callbacks log at this step
        "setup_callback": SetupCallback(resume, paths.now, paths.logdir, paths.ckptdir, paths.cfgdir, config,
                                        lightning_config),
        "image_logger": ImageLogger(batch_frequency=750, max_images=4, clamp=True),
        "learning_rate_logger": LearningRateMonitor(logging_interval="step"),
        "step_timer": StepTimer(every=50),
        "checkpoint": make_checkpoint_callback(paths.ckptdir, monitor=getattr(model, "monitor", None),
                                               every_n_train_steps=every, overrides=ckpt_params),
    }
    if progress_bar:
        callbacks["progress_bar"] = TQDMProgressBar(refresh_rate=10)
    for name, node in (to_plain(lightning_config.get("callbacks", None)) or {}).items():
        if node is None:
            callbacks.pop(name, None)  # `callbacks: {image_logger: null}` turns a default off
        elif name in ("image_logger", "step_timer") and "target" not in node:
            cls = ImageLogger if name == "image_logger" else StepTimer
            callbacks[name] = instantiate_from_config({"target": f"{cls.__module__}.{cls.__name__}",
                                                       "params": node.get("params", node)},
                                                      where=f"lightning.callbacks.{name}")
        else:
            callbacks[name] = _instantiate_callback(name, node)
    return list(callbacks.values())


def build_loggers(paths: RunPaths, lightning_config: DictConfig) -> list:
    node = lightning_config.get("logger", None)
    if node is not None:
        nodes = to_plain(node)
        nodes = nodes if isinstance(nodes, list) else [nodes]
        return [instantiate_from_config(n, where="lightning.logger", save_dir=str(paths.logdir)) for n in nodes]
    # one CSV file per start of the run (a resumed run would overwrite the file), all in csv/
    version, n = paths.now, 0
    while (paths.logdir / "csv" / version).exists():
        n += 1
        version = f"{paths.now}-{n}"
    return [TensorBoardLogger(save_dir=str(paths.logdir), name="tensorboard", version=""),
            CSVLogger(save_dir=str(paths.logdir), name="csv", version=version)]


def scale_learning_rate(model: L.LightningModule, config: DictConfig, accumulate: int, ngpu: int) -> float:
    """model.learning_rate = accumulate x devices x batch x base_learning_rate, printed as the original."""
    bs = config.data.params.batch_size
    base_lr = config.model.get("base_learning_rate", None)
    if base_lr is None:
        raise ConfigError("model.base_learning_rate: missing (the learning rate is derived from it)")
    model.learning_rate = accumulate * ngpu * bs * base_lr
    say("Setting learning rate to {:.2e} = {} (accumulate_grad_batches) * {} (num_gpus) * {} (batchsize) "
                   "* {:.2e} (base_lr)".format(model.learning_rate, accumulate, ngpu, bs, base_lr))
    return model.learning_rate


def configure_accumulation(model: L.LightningModule, kw: dict[str, Any]) -> int:
    """Returns the accumulation factor; hands it to manually optimized models.

    Lightning refuses accumulate_grad_batches with manual optimization, so the VQGAN shell steps its
    optimizers every `model.accumulate_grad_batches` batches itself.
    """
    accumulate = int(kw.get("accumulate_grad_batches", 1) or 1)
    if accumulate < 1:
        raise ConfigError(f"lightning.trainer.accumulate_grad_batches: must be >= 1, got {accumulate}")
    if not model.automatic_optimization:
        kw.pop("accumulate_grad_batches", None)
        if accumulate > 1 and not hasattr(model, "accumulate_grad_batches"):
            raise ConfigError(f"lightning.trainer.accumulate_grad_batches={accumulate}: {type(model).__name__} "
                              "optimizes manually and does not support gradient accumulation")
        if hasattr(model, "accumulate_grad_batches"):
            model.accumulate_grad_batches = accumulate
    else:
        kw["accumulate_grad_batches"] = accumulate
    return accumulate


def merge_nodes(base: Any, new: Any) -> Any:
    """Merge plain config trees as OmegaConf.merge does (dicts key by key, anything else replaced),
    except that a node naming a different `target` replaces the old node whole: mixing the
    `params` of two classes would hand one the other's arguments."""
    if not (isinstance(base, dict) and isinstance(new, dict)):
        return new
    if "target" in base and "target" in new and base["target"] != new["target"]:
        return new
    out = dict(base)
    for key, value in new.items():
        out[key] = merge_nodes(base[key], value) if key in base else value
    return out


def load_configs(paths: Sequence[str], overrides: Sequence[str] = ()) -> DictConfig:
    """The -b files merged left to right (see merge_nodes), then key.path=value overrides."""
    merged: Any = {}
    for path in paths:
        merged = merge_nodes(merged, OmegaConf.to_container(load_config(path), resolve=False))
    config = OmegaConf.create(merged)
    return OmegaConf.merge(config, load_config(overrides=overrides)) if overrides else config


@dataclass
class Job:
    """Everything built for a run, before fit: used by the CLI, the demo and tests."""
    paths: RunPaths
    config: DictConfig
    lightning_config: DictConfig
    model: L.LightningModule
    data: L.LightningDataModule
    trainer: L.Trainer


def build_job(opts: TrainOptions) -> Job:
    apply_allow_import(opts.allow_import)
    paths = resolve_paths(opts)
    L.seed_everything(opts.seed, workers=True, verbose=False)
    config = load_configs(paths.configs, opts.overrides)
    lightning_config = config.pop("lightning", None) or OmegaConf.create()
    for key in ("model", "data"):
        if key not in config:
            raise ConfigError(f"config {' + '.join(paths.configs)}: missing top-level '{key}:' section")
    kw = trainer_kwargs(lightning_config, opts)
    legacy_resume = kw.pop("resume_from_checkpoint", None)
    if legacy_resume and paths.resume_ckpt is None:
        paths.resume_ckpt = pick_resume_checkpoint(legacy_resume)

    model = instantiate_from_config(config.model, where="model")
    data = instantiate_from_config(config.data, where="data")
    data.setup("fit")  # fail early (missing files, unreadable data) before any process is launched
    for split, ds in getattr(data, "datasets", {}).items():
        size = len(ds) if hasattr(ds, "__len__") else "streamed"
        say(f"data {split}: {type(ds).__name__}, {size}")

    accumulate = configure_accumulation(model, kw)
    if not model.automatic_optimization and _distributed(kw) and kw.get("strategy", "auto") in ("auto", "ddp",
                                                                                                 "ddp_spawn"):
        # The generator and discriminator steps each leave the other's parameters without gradients.
        spawn = kw.get("strategy") == "ddp_spawn"
        kw["strategy"] = "ddp_spawn_find_unused_parameters_true" if spawn else "ddp_find_unused_parameters_true"
    callbacks = build_callbacks(paths, config, lightning_config, model, resume=paths.resume_ckpt is not None,
                                progress_bar=kw.get("enable_progress_bar", True) is not False)
    callbacks += safety_callbacks(paths.ckptdir, stop_on_nan=kw.pop("terminate_on_nan", True))
    callbacks.append(RandomState())  # exact resume (taming.training.determinism)
    # written to <now>-lightning.yaml, so a resumed run keeps the same limits
    saved_kw = {**kw, "accumulate_grad_batches": accumulate}
    if kw.get("max_steps") not in (None, -1):
        kw.setdefault("max_epochs", -1)  # the step limit ends the run, not Lightning's default 1000 epochs
    kw["plugins"] = [*(kw.get("plugins") or []), AtomicCheckpointIO()]  # temp file, fsync, rename
    trainer = L.Trainer(**kw, callbacks=callbacks, logger=build_loggers(paths, lightning_config),
                        default_root_dir=str(paths.logdir))
    scale_learning_rate(model, config, accumulate, trainer.num_devices * trainer.num_nodes)
    lightning_config.trainer = OmegaConf.create({k: v for k, v in saved_kw.items() if _plain(v)})
    return Job(paths, config, lightning_config, model, data, trainer)


def _distributed(kw: dict[str, Any]) -> bool:
    """Whether the trainer will run several processes (decided before it is built)."""
    devices = kw.get("devices", 1)
    if devices in ("auto", -1, "-1"):  # every GPU there is; one process on CPU
        import torch

        return kw.get("accelerator") != "cpu" and torch.cuda.device_count() > 1
    several = (isinstance(devices, int) and devices > 1) or (isinstance(devices, list) and len(devices) > 1)
    return several or int(kw.get("num_nodes", 1) or 1) > 1


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, str, bool, list))


def run(opts: TrainOptions) -> Job:
    """`taming train`: fit when -t, then test unless --no-test (and a test split exists)."""
    job = build_job(opts)
    trainer = job.trainer
    if opts.train:  # signals and non-finite losses: taming.training.safety
        trainer.fit(job.model, job.data, ckpt_path=str(job.paths.resume_ckpt) if job.paths.resume_ckpt else None)
    has_test = "test" in getattr(job.data, "dataset_configs", {}) or not hasattr(job.data, "dataset_configs")
    if not opts.no_test and not trainer.interrupted and has_test:
        trainer.test(job.model, job.data)
    return job
