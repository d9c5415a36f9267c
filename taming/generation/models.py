"""What the sampling commands load: a run folder or checkpoint (+ configs) -> a model, and facts about it.

Run folders are found as the app finds them (`taming.generation.runs.resolve_run`): ours and the
original's share the layout configs/*-project.yaml + checkpoints/last.ckpt, and the original's
targets and key names build the inference cores (`taming.checkpoint.load_model`, no training
code). A transformer run's checkpoint holds every stage, so the stage files its config names
(often paths on the authors' machine) are not read.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Sequence

import torch

from taming.generation.runs import LoadedRun, RunSource, load_run, resolve_run
from taming.checkpoint import load_model, read_checkpoint
from taming.config import ConfigError
from taming.transformer.net2net import Net2Net


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
    # as the transformer's or VQGAN's own ckpt_path: stage files named in a training config are not read
    overrides = [f"model.params.ckpt_path={json.dumps(source.ckpt)}"] if source.ckpt else []
    model, config = load_model(list(source.configs), None, overrides)
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
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError):
        ckpt = read_checkpoint(path)  # an original Lightning 1.x file (pickled objects) or safetensors
    step = ckpt.get("global_step") if isinstance(ckpt, dict) else None
    if step is None and isinstance(ckpt, dict) and "metadata" in ckpt:
        step = ckpt["metadata"].get("global_step")
    return {"path": str(Path(path).resolve()), "global_step": None if step is None else int(json.loads(str(step)))}
