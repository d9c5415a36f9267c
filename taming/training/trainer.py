"""Build and run a training job the way the original main.py did, on Lightning 2.

    opts (parsed by taming.cli.train) -> RunPaths (run folder, resume checkpoint)
    -> config (YAML files + key=value overrides; `lightning:` section split off)
    -> model, data module, L.Trainer with loggers and callbacks -> fit (-> test)

The original configs' `lightning: {trainer:, callbacks:, modelcheckpoint:, logger:}` sections are
honoured. The options live in options.py, the run folder in run_folder.py, the translation of
Lightning 1.x trainer keys (gpus, distributed_backend, ...) in lightning_settings.py; this module
builds the job and runs it.
"""
from __future__ import annotations

import contextlib
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import lightning as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from taming.config import ConfigError, check_keys, fix_allow_list, instantiate_from_config, load_configs, to_plain
from taming.config_types import check_value
from taming.training.callbacks import (ImageLogger, ResumeStepFix, SetupCallback, StepTimer,
                                       make_checkpoint_callback)
from taming.training.checkpoint_io import AtomicCheckpointIO
from taming.training.determinism import ModuleState, RandomState
from taming.training.lightning_settings import is_distributed, require_gpus, trainer_kwargs
from taming.training.options import TrainOptions
from taming.training.resume import ResumedLearningRate, pick_resume_checkpoint
from taming.training.run_folder import RunPaths, resolve_paths
from taming.training.safety import safety_callbacks

log = logging.getLogger(__name__)


@rank_zero_only
def say(message: str) -> None:
    """Print on the first process only (the original printed these lines)."""
    print(message, flush=True)


@contextlib.contextmanager
def expected_warnings_silenced() -> Iterator[None]:
    """Around fit and test only: Lightning warnings that our setup makes expected."""
    with warnings.catch_warnings():
        # Frozen stages (first stage, cond stage, LPIPS) are in eval mode on purpose; Lightning 2 warns
        # about every such module at fit start, which only hides the warnings that matter.
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
        # Our shells override configure_model only to shard under --strategy fsdp; without it the weight
        # averaging callback (EMA) works and its warning about sharding does not apply.
        warnings.filterwarnings("ignore", message=r"You're using the WeightAveraging callback with a model that "
                                                  "overrides")
        # Periodic checkpoints of the manually optimized GAN hold the weights after the batch's steps, as meant.
        warnings.filterwarnings("ignore", message=r"Using ModelCheckpoint with manual optimization and every_n_train")
        # Our training loaders resume mid-epoch themselves (taming.training.determinism.ResumableSampler).
        warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch")
        yield


def built(obj: Any, kind: type, what: str, where: str) -> Any:
    """`obj` if it is a `kind`; a target of the user's own package may build anything, even None."""
    if not isinstance(obj, kind):
        raise ConfigError(f"{where}.target built {'None' if obj is None else 'a ' + type(obj).__name__}, not {what}")
    return obj


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
            continue
        if name in ("image_logger", "step_timer") and "target" not in node:  # settings of a default callback
            cls = ImageLogger if name == "image_logger" else StepTimer
            node = {"target": f"{cls.__module__}.{cls.__name__}", "params": node.get("params", node)}
        # original targets (main.ImageLogger, pytorch_lightning.callbacks.*) resolve through TARGET_ALIASES
        where = f"lightning.callbacks.{name}"
        callbacks[name] = built(instantiate_from_config(node, where=where), Callback, "a Lightning callback", where)
    return list(callbacks.values())


def build_loggers(paths: RunPaths, lightning_config: DictConfig) -> list:
    node = lightning_config.get("logger", None)
    if node is not None:
        nodes = to_plain(node)
        nodes = nodes if isinstance(nodes, list) else [nodes]
        return [built(instantiate_from_config(n, where="lightning.logger", save_dir=str(paths.logdir)), Logger,
                      "a Lightning logger", "lightning.logger") for n in nodes]
    # one CSV file per start of the run (a resumed run would overwrite the file), all in csv/
    version, n = paths.now, 0
    while (paths.logdir / "csv" / version).exists():
        n += 1
        version = f"{paths.now}-{n}"
    return [TensorBoardLogger(save_dir=str(paths.logdir), name="tensorboard", version=""),
            CSVLogger(save_dir=str(paths.logdir), name="csv", version=version)]


def base_learning_rate(config: DictConfig) -> float:
    """model.base_learning_rate, checked before anything is built: a finite number >= 0."""
    base_lr = config.model.get("base_learning_rate", None)
    if base_lr is None:
        raise ConfigError("model.base_learning_rate: missing (the learning rate is derived from it)")
    check_value(base_lr, float, "model.base_learning_rate", ConfigError)
    if not math.isfinite(base_lr) or base_lr < 0:
        raise ConfigError(f"model.base_learning_rate: must be a finite number >= 0, got {base_lr}")
    return float(base_lr)


def scale_learning_rate(model: L.LightningModule, config: DictConfig, accumulate: int, ngpu: int) -> float:
    """model.learning_rate = accumulate x devices x batch x base_learning_rate, printed as the original."""
    bs = config.data.params.batch_size
    base_lr = base_learning_rate(config)
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
    fix_allow_list(opts.allow_import)
    paths = resolve_paths(opts)
    L.seed_everything(opts.seed, workers=True, verbose=False)
    config = load_configs(paths.configs, opts.overrides)
    lightning_config = config.pop("lightning", None) or OmegaConf.create()
    for key in ("model", "data"):
        if key not in config:
            raise ConfigError(f"config {' + '.join(paths.configs)}: missing top-level '{key}:' section")
    base_learning_rate(config)  # a bad value fails before anything is built
    kw = trainer_kwargs(lightning_config, opts)
    require_gpus(kw, opts)
    legacy_resume = kw.pop("resume_from_checkpoint", None)
    if legacy_resume and paths.resume_ckpt is None:
        paths.resume_ckpt = pick_resume_checkpoint(legacy_resume)

    model = built(instantiate_from_config(config.model, where="model"), L.LightningModule, "a LightningModule "
                  "(a training shell such as taming.models.vqgan.VQModel)", "model")
    data = built(instantiate_from_config(config.data, where="data"), L.LightningDataModule, "a LightningDataModule "
                 "(e.g. main.DataModuleFromConfig)", "data")
    data.setup("fit")  # fail early (missing files, unreadable data) before any process is launched
    for split, ds in getattr(data, "datasets", {}).items():
        size = len(ds) if hasattr(ds, "__len__") else "streamed"
        say(f"data {split}: {type(ds).__name__}, {size}")

    accumulate = configure_accumulation(model, kw)
    if not model.automatic_optimization and is_distributed(kw) and kw.get("strategy", "auto") in ("auto", "ddp",
                                                                                                 "ddp_spawn"):
        # The generator and discriminator steps each leave the other's parameters without gradients.
        spawn = kw.get("strategy") == "ddp_spawn"
        kw["strategy"] = "ddp_spawn_find_unused_parameters_true" if spawn else "ddp_find_unused_parameters_true"
    callbacks = build_callbacks(paths, config, lightning_config, model, resume=paths.resume_ckpt is not None,
                                progress_bar=kw.get("enable_progress_bar", True) is not False)
    callbacks += safety_callbacks(paths.ckptdir, stop_on_nan=kw.pop("terminate_on_nan", True))
    callbacks += [RandomState(), ModuleState(), ResumedLearningRate()]  # exact resume, the rate it prints
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


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, str, bool, list))


def run(opts: TrainOptions) -> Job:
    """`taming train`: fit when -t, then test unless --no-test (and a test split exists)."""
    job = build_job(opts)
    trainer = job.trainer
    if opts.train:  # signals and non-finite losses: taming.training.safety
        with expected_warnings_silenced():
            trainer.fit(job.model, job.data, ckpt_path=str(job.paths.resume_ckpt) if job.paths.resume_ckpt else None)
    has_test = "test" in getattr(job.data, "dataset_configs", {}) or not hasattr(job.data, "dataset_configs")
    if not opts.no_test and not trainer.interrupted and has_test:
        with expected_warnings_silenced():
            trainer.test(job.model, job.data)
    return job


__all__ = ["TrainOptions", "RunPaths", "Job", "build_job", "run", "say", "expected_warnings_silenced"]
