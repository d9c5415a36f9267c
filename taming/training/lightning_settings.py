"""The `lightning.trainer` section of a config, Lightning 1.x keys translated to Lightning 2
(gpus, distributed_backend, accelerator=ddp, obsolete keys dropped with a note), then the
command-line flags on top."""
from __future__ import annotations

import inspect
import logging
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from taming.config import ConfigError, check_keys, check_types, to_plain
from taming.precision import resolve
from taming.training.options import TrainOptions
from taming.training.sharding import FSDPDataParallel

log = logging.getLogger(__name__)

# Lightning 1.x trainer keys that no longer exist and change nothing we do: dropped with a note.
OBSOLETE_TRAINER_KEYS = {"weights_summary", "progress_bar_refresh_rate", "flush_logs_every_n_steps",
                         "checkpoint_callback", "log_gpu_memory", "track_grad_norm"}
TRAINER_KEYS = set(inspect.signature(L.Trainer.__init__).parameters) - {"self", "callbacks", "logger"}


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
        elif key == "terminate_on_nan":  # our NonFiniteGuard (taming.training.safety): on unless false
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
    if str(kw.get("precision")) == "auto":  # bf16-mixed where bf16 is fast (taming/precision.py), else 32
        gpu = kw["accelerator"] != "cpu" and torch.cuda.is_available()
        kw["precision"] = resolve("auto", "cuda" if gpu else "cpu").train
    if kw.get("strategy") == "fsdp":
        kw["strategy"] = FSDPDataParallel()  # FSDP2, on GPUs and CPUs (taming/training/sharding.py)
    return kw


def require_gpus(kw: dict[str, Any], opts: TrainOptions) -> None:
    """GPUs asked for (--gpus, --accelerator gpu, lightning.trainer) that this machine does not have:
    one line saying so and how to train on the CPU, before anything is built (Lightning's own error
    is a MisconfigurationException traceback)."""
    if kw.get("accelerator") not in ("gpu", "cuda"):
        return
    count, devices = torch.cuda.device_count(), kw.get("devices", 1)
    if isinstance(devices, list):
        absent = [d for d in devices if d >= count]
    else:
        wanted = count if devices in (-1, "-1", "auto") else int(devices)
        absent = list(range(count, wanted)) if wanted > count or not count else []
    if not absent and count:
        return
    where = f"--gpus {opts.gpus}" if opts.gpus else "--accelerator gpu" if opts.accelerator else "lightning.trainer"
    have = f"{count} GPU{'s' if count != 1 else ''} (ids 0-{count - 1})" if count else "no GPU that torch can use"
    fix = "leave out --gpus" if opts.gpus else "pass --accelerator cpu"
    raise ConfigError(f"{where}: GPU {', '.join(map(str, absent)) or 'any'} is not there; this machine has {have}. "
                      f"To train on the CPU, {fix}.")


def is_distributed(kw: dict[str, Any]) -> bool:
    """Whether the trainer will run several processes (decided before it is built)."""
    devices = kw.get("devices", 1)
    if devices in ("auto", -1, "-1"):  # every GPU there is; one process on CPU
        return kw.get("accelerator") != "cpu" and torch.cuda.device_count() > 1
    several = (isinstance(devices, int) and devices > 1) or (isinstance(devices, list) and len(devices) > 1)
    return several or int(kw.get("num_nodes", 1) or 1) > 1
