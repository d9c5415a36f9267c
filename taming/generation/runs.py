"""Which trained run the app and the commands use, and loading it (the one loader: `build`).

    logs/<timestamp>_<name>/                  configs/*-project.yaml + checkpoints/last.ckpt
    logs/<run>/checkpoints/<file>.ckpt        that checkpoint, with its run folder's configs
    RUN --config extra.yaml [more.yaml]       the run's configs, then the extra files merged over them
    any.ckpt --config model.yaml [more.yaml]  the configs merged left to right, then the checkpoint
    --config model.yaml                       the config alone (its model.params.ckpt_path, if any)

The model is built and loaded by taming.checkpoint.load_model (validated config, strict
checkpoint loading; several configs merge as `taming train -b` merges them). Errors a user can cause
raise ConfigError or CheckpointError naming the path; an error that only the extra files cause names
them, not the run. The page opens only paths under its root folder (`check_allowed`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from taming.checkpoint import INFERENCE_TARGETS, CheckpointError, load_model, read_checkpoint
from taming.config import ConfigError, get_obj_from_str, load_configs
from taming.transformer.net2net import Net2Net

PROJECT_CONFIGS = "*-project.yaml"  # what a run folder's configs/ holds besides the lightning section


@dataclass(frozen=True)
class RunSource:
    configs: tuple[str, ...]  # every config file, merged left to right: the run's, then the extra ones
    ckpt: str | None  # None: the weights the config itself names (model.params.ckpt_path)
    name: str  # what messages and the page call it: the run folder or checkpoint given
    extra: tuple[str, ...] = ()  # the files given on top of a run folder's own configs (blamed for their errors)

    def modified(self) -> float:
        """Latest modification time of its files: a retrained run is a different model to cache."""
        files = [*self.configs, *([self.ckpt] if self.ckpt else [])]
        return max(Path(f).stat().st_mtime for f in files)


def run_configs(run_dir: Path) -> tuple[str, ...]:
    configs = sorted(str(p) for p in (run_dir / "configs").glob(PROJECT_CONFIGS))
    if not configs:
        raise ConfigError(f"run folder {run_dir} has no configs/{PROJECT_CONFIGS}; pass --config MODEL.yaml")
    return tuple(configs)


def resolve_run(target: str | None, configs: Sequence[str] = ()) -> RunSource:
    """A run folder or checkpoint (`target`) and optional config files -> what to load."""
    configs = tuple(str(c) for c in configs)
    for config in configs:
        if not Path(config).is_file():
            raise ConfigError(f"config file not found: {config}")
    if not target:
        if not configs:
            raise ConfigError("no model given: pass a run folder or checkpoint (--logdir) or --config MODEL.yaml")
        return RunSource(configs, None, " + ".join(configs))
    path = Path(target)
    if path.is_dir():
        ckpt = path / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise ConfigError(f"run folder {path} has no checkpoints/last.ckpt")
        return RunSource(run_configs(path) + configs, str(ckpt), target, configs)
    if path.is_file():
        if path.parent.name == "checkpoints" and (path.parent.parent / "configs").is_dir():
            return RunSource(run_configs(path.parent.parent) + configs, str(path), target, configs)
        if not configs:
            raise ConfigError(f"checkpoint {path} is not in a run folder: pass --config MODEL.yaml with it")
        return RunSource(configs, str(path), target)
    raise ConfigError(f"run folder or checkpoint not found: {path} (absolute: {path.resolve()})")


def check_allowed(paths: Sequence[str], root: Path, given: Sequence[str] = (), flag: str = "--logdir") -> None:
    """Refuse paths outside `root` (the folder the app was started in), except those given at start.

    A run folder's configs name code to build, so a page left running must not open files a visitor
    types from elsewhere on the machine. `flag` is the `taming app` flag that would open them (a run
    folder or checkpoint: --logdir; an extra config file: --config)."""
    root = root.resolve()
    allowed = {Path(g).resolve() for g in given}
    for p in paths:
        resolved = Path(p).resolve()
        if resolved not in allowed and not resolved.is_relative_to(root):
            raise ConfigError(f"{p} is outside {root}, the folder the app was started in; start "
                              f"`taming app {flag} {p}` to open it")


def find_runs(root: str | Path = "logs") -> list[Path]:
    """Run folders under `root` with a checkpoints/last.ckpt, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "checkpoints" / "last.ckpt").is_file()]
    return sorted(runs, key=lambda p: p.name, reverse=True)  # names start with the run's timestamp


@dataclass
class LoadedRun:
    model: Net2Net  # eval mode, on its device
    config: DictConfig
    source: RunSource
    window: tuple[int, int]  # code grid (h, w) of the training crops: the GPT's sliding window
    factor: int  # pixels per code along each side (first-stage downsampling)
    warnings: list[str] = field(default_factory=list)  # what the page shows above everything

    @property
    def device(self) -> torch.device:
        return self.model.transformer.head.weight.device

    @classmethod
    def of(cls, model: Net2Net, config: Any = None, source: RunSource | None = None,
           warnings: Sequence[str] = ()) -> "LoadedRun":
        """A loaded transformer with its window (the first stage's training crops) and factor."""
        factor = model.first_stage_model.downsample_factor
        side = model.first_stage_model.encoder.resolution // factor
        source = source or RunSource((), None, type(model).__name__)
        return cls(model, config, source, (side, side), factor, list(warnings))


def check_is_transformer(configs: Sequence[str], name: str, command: str = "the app") -> DictConfig:
    """Fail before building anything when the config's model is not a Net2NetTransformer (e.g. a VQGAN run);
    `command` is what the message says samples from transformer runs (the app, `taming sample`, ...)."""
    config = load_configs(configs)
    model = config.get("model")
    target = model.get("target") if isinstance(model, DictConfig) else None
    if target is None:
        raise ConfigError(f"{name}: its config has no model.target")
    cls = get_obj_from_str(INFERENCE_TARGETS.get(target, target), "model.target")
    if not (isinstance(cls, type) and issubclass(cls, Net2Net)):
        raise ConfigError(f"{name}: the model is {target}, not a Net2NetTransformer; {command} samples "
                          f"from transformer runs (a first-stage run has no GPT to sample from; `taming reconstruct "
                          f"-r {name} IMAGE` runs it)")
    return config


def blame_extra(source: RunSource, exc: ConfigError) -> ConfigError:
    """An error of the merged configs: the extra files' when the run's own configs build without them."""
    own = source.configs[:len(source.configs) - len(source.extra)]
    try:
        check_is_transformer(own, source.name)
        load_model(list(own), None, ["model.params.ckpt_path=null"])  # the stages' files, if named, are read
    except Exception:  # noqa: BLE001 - any failure of the run alone: the run is broken
        return exc  # the run itself is broken: its message stands
    return ConfigError(f"extra config {' + '.join(source.extra)} (merged over {source.name}): {exc}")


def build(source: RunSource, overrides: Sequence[str] = (), command: str | None = None) -> tuple[Any, DictConfig]:
    """The one loader: (model, merged config) of a source, built for inference by
    taming.checkpoint.load_model. The checkpoint is given as the model's own ckpt_path, so it replaces
    every stage's weights and the stage files a training config names (often paths of another
    machine) are not read. `command` (e.g. "`taming sample`"): the model must be a transformer."""
    try:
        if command is not None:
            check_is_transformer(source.configs, source.name, command)
        ckpt = [f"model.params.ckpt_path={json.dumps(source.ckpt)}"] if source.ckpt else []
        return load_model(list(source.configs), None, [*ckpt, *overrides])
    except ConfigError as exc:
        raise blame_extra(source, exc) if source.extra else exc


def load_run(source: RunSource, device: str | torch.device = "cpu", command: str = "the app") -> LoadedRun:
    model, config = build(source, command=command)
    warnings = []
    if not source.ckpt and not OmegaConf.select(config, "model.params.ckpt_path"):
        warnings.append(f"{source.name} names no transformer weights (no checkpoint, no model.params.ckpt_path): "
                        "the GPT is randomly initialised, so samples are noise")
    return LoadedRun.of(model.to(device).eval(), config, source, warnings)


def device_for(device: str | None) -> str:
    """The device to run on: `device` checked, or cuda when available, else cpu."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ConfigError(f"--device {device!r}: not a device (cpu, cuda, cuda:1, ...)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
    return device


def transformer_run(target: str | None, configs: Sequence[str] = (), device: str | None = None,
                    command: str = "this command") -> LoadedRun:
    """A Net2NetTransformer run (folder, or checkpoint + configs), loaded in eval mode; `command` (e.g.
    "`taming sample`") is named when the run is of another kind."""
    return load_run(resolve_run(target, configs), device_for(device), command)


def first_stage_run(target: str | None, configs: Sequence[str] = (), device: str | None = None
                    ) -> tuple[torch.nn.Module, RunSource]:
    """The first stage (VQGAN) of a first-stage run, or of a transformer run -> (model in eval mode, source).
    Built for inference (taming.checkpoint.load_model): a checkpoint's loss weights are dropped, logged."""
    source = resolve_run(target, configs)
    model, config = build(source)
    if isinstance(model, Net2Net):
        model = model.first_stage_model
    elif not callable(getattr(model, "decode_codes", None)):
        raise ConfigError(f"{source.name}: the model is {config.model.target}, not a first stage (VQGAN) "
                          "or a transformer")
    return model.to(device_for(device)).eval(), source


def checkpoint_info(path: str | None) -> dict[str, Any]:
    """{"path", "global_step"} of a checkpoint, for the settings JSON (step None when it holds none)."""
    if path is None:
        return {"path": None, "global_step": None}
    try:  # memory-mapped: reading the step does not load a large checkpoint's tensors
        ckpt = read_checkpoint(path, mmap=True)
    except CheckpointError:
        ckpt = read_checkpoint(path)  # a legacy (non-zip) file cannot be memory-mapped
    step = ckpt.get("global_step") if isinstance(ckpt, dict) else None
    if step is None and isinstance(ckpt, dict) and "metadata" in ckpt:
        step = ckpt["metadata"].get("global_step")
    return {"path": str(Path(path).resolve()), "global_step": None if step is None else int(json.loads(str(step)))}
