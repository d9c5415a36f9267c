"""The one place that reads and writes model weights.

Formats read:
- the original Lightning 1.x `.ckpt` files (with optimizer states, callbacks, hparams),
- our own Lightning 2 checkpoints and `torch.save`d state dicts,
- `.safetensors` files.

Everything is read with `torch.load(weights_only=True)`. Old Lightning checkpoints pickle a few
objects besides tensors (callback classes as dict keys, numpy scalars, argparse namespaces);
those globals are mapped to an inert placeholder class, so nothing from the file is executed and
only tensors are used.

Loading is strict: a mismatch raises CheckpointError listing missing, unexpected and wrong-shape
keys. Two exceptions are explicit and logged, never silent: `ignore_keys` prefixes (the original
argument) and training-only `loss.*` weights when the model was built without that loss. Published
inference weights may lack BatchNorm's `num_batches_tracked` counters where the caller says so.

Writing is atomic (`atomic_write`): a temporary file beside the target (same filesystem, so the
rename is atomic even when $TMPDIR is elsewhere), fsync, then os.replace. A killed writer leaves at
most a temp file named `.<name>.taming-tmp-<pid>`, which `sweep_temp_files` removes.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from taming.config import ConfigError, instantiate_from_config, load_configs, to_plain

log = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors",)
# A key belongs to a training loss if any dotted segment is `loss` (e.g. `loss.discriminator.*`,
# `first_stage_model.loss.perceptual_loss.*`).
LOSS_KEY = re.compile(r"(^|\.)loss\.")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or does not fit the model; the message says why."""


class _Inert:
    """Stands in for any non-tensor object pickled in an old checkpoint; it runs no code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> "_Inert":
        return _Inert(*args, **kwargs)


def _safe_load(path: Path, mmap: bool = False) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        pass  # pickled non-tensor globals: map them to _Inert below
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    stubs = [(_Inert, name) for name in unsafe]
    log.info("checkpoint %s pickles %d non-tensor objects; they are read as inert placeholders: %s",
             path, len(stubs), ", ".join(sorted(unsafe)))
    with torch.serialization.safe_globals(stubs):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict:
    """The whole checkpoint as a dict (safetensors files give {'state_dict': ..., 'metadata': ...});
    `mmap`: tensors stay on disk until used (reading a large checkpoint's step costs nothing)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (absolute: {path.resolve()})")
    if path.suffix in SAFETENSORS_SUFFIXES:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                sd = {k: f.get_tensor(k) for k in f.keys()}
                meta = f.metadata() or {}
        except Exception as exc:
            raise CheckpointError(f"cannot read safetensors file {path}: {exc}") from exc
        return {"state_dict": sd, "metadata": meta}
    try:
        obj = _safe_load(path, mmap)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a dict of weights")
    return dict(obj)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint: its `state_dict` entry, or the file itself if it is one."""
    ckpt = read_checkpoint(path)
    sd = ckpt.get("state_dict", ckpt)
    bad = [k for k, v in sd.items() if not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(f"checkpoint {path}: entries are not tensors: {', '.join(map(str, bad[:5]))}"
                              " (is this a model checkpoint?)")
    return dict(sd)


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # dropped by ignore_keys
    dropped_loss: list[str] = field(default_factory=list)  # training-loss weights the model does not hold
    missing_loss: list[str] = field(default_factory=list)  # loss weights the file lacks; the loss keeps its own


def _fmt(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, ignore_keys: Iterable[str] = (),
                 source: str = "state_dict", counters_optional: bool = False) -> LoadReport:
    """Load strictly, with the explicit exceptions described in the module docstring; `counters_optional`:
    BatchNorm's num_batches_tracked, which evaluation never reads, may be absent (the module keeps its own)."""
    ignore_keys = tuple(ignore_keys)
    own = module.state_dict()
    report = LoadReport()
    sd: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if ignore_keys and key.startswith(ignore_keys):
            report.ignored.append(key)
        elif key not in own and LOSS_KEY.search(key) and not any(LOSS_KEY.search(k) for k in own):
            report.dropped_loss.append(key)
        else:
            sd[key] = value
    missing = [k for k in own if k not in sd and not (ignore_keys and k.startswith(ignore_keys))
               and not (counters_optional and k.endswith("num_batches_tracked"))]
    report.missing_loss = [k for k in missing if LOSS_KEY.search(k)]
    missing = [k for k in missing if not LOSS_KEY.search(k)]
    unexpected = [k for k in sd if k not in own]
    wrong_shape = [f"{k} (file {tuple(sd[k].shape)}, model {tuple(own[k].shape)})"
                   for k in sd if k in own and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong_shape:
        parts = [f"weights from {source} do not fit {type(module).__name__}:"]
        if missing:
            parts.append(f"missing {len(missing)}: {_fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {_fmt(unexpected)}")
        if wrong_shape:
            parts.append(f"wrong shape {len(wrong_shape)}: {_fmt(wrong_shape)}")
        raise CheckpointError("\n  ".join(parts))
    module.load_state_dict(sd, strict=False)
    report.loaded = list(sd)
    if report.ignored:
        log.info("%s: ignored %d keys by ignore_keys %s", source, len(report.ignored), ignore_keys)
    if report.dropped_loss:
        log.info("%s: dropped %d training-loss weights the model was built without (%s)", source,
                 len(report.dropped_loss), _fmt(report.dropped_loss, 3))
    if report.missing_loss:
        log.warning("%s: holds no weights for %d loss keys; the loss keeps its own (%s)", source,
                    len(report.missing_loss), _fmt(report.missing_loss, 3))
    return report


def init_from_ckpt(module: nn.Module, path: str | os.PathLike, ignore_keys: Iterable[str] = ()) -> LoadReport:
    """The original `init_from_ckpt(path, ignore_keys)`, strict as described above."""
    report = load_weights(module, read_state_dict(path), ignore_keys=ignore_keys, source=str(path))
    log.info("restored %d tensors of %s from %s", len(report.loaded), type(module).__name__, path)
    return report


TEMP_MARK = ".taming-tmp-"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it is fsynced and renamed onto `path`, else removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """fsync `folder`, so that a rename inside it survives a power cut (where the system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sweep_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove temp files that killed writers left in `folder`; returns what was removed."""
    folder = Path(folder)
    removed = []
    for tmp in folder.glob(f".*{TEMP_MARK}*") if folder.is_dir() else []:
        pid = tmp.name.rsplit(TEMP_MARK, 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue  # another process is writing it right now
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    if removed:
        log.warning("removed %d unfinished checkpoint file(s) of killed runs in %s", len(removed), folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why `path` is not a complete checkpoint (missing, truncated, corrupt), or None if it is one.

    torch.save writes a zip archive whose entries carry CRCs: reading them all finds truncated and
    damaged files without unpickling anything or holding the weights in memory."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    if path.stat().st_size == 0:
        return "empty"
    try:
        is_zip = zipfile.is_zipfile(path)
    except zipfile.BadZipFile as exc:  # is_zipfile lets some malformed end records through, e.g. "multi-disk"
        return f"damaged ({type(exc).__name__}: {exc})"
    if is_zip:
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
                names = z.namelist()
        except Exception as exc:
            return f"damaged ({type(exc).__name__}: {exc})"
        if bad is not None:
            return f"damaged (entry {bad} fails its checksum)"
        if not any(n.endswith("data.pkl") for n in names):
            return "not a torch checkpoint (no data.pkl)"
        try:  # torch's own reader is stricter about headers; mapped, so no weights are read into memory
            _safe_load(path, mmap=True)
        except Exception as exc:
            return f"damaged ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
        return None
    try:  # the pre-zip torch format, or a zip cut short (its directory is written last)
        read_checkpoint(path)
    except CheckpointError:
        return "damaged (truncated, or not a torch checkpoint)"
    return None


def save_safetensors(path: str | os.PathLike, module_or_sd: nn.Module | Mapping[str, torch.Tensor],
                     metadata: Mapping[str, Any] | None = None) -> Path:
    """Write weights as safetensors; metadata values are stored as JSON strings (e.g. the config)."""
    from safetensors.torch import save_file

    sd = module_or_sd.state_dict() if isinstance(module_or_sd, nn.Module) else module_or_sd
    sd = {k: v.detach().contiguous().cpu() for k, v in sd.items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    path = Path(path)
    with atomic_write(path) as tmp:
        save_file(sd, str(tmp), metadata=meta)
    return path


def save_state_dict(path: str | os.PathLike, module_or_sd: nn.Module | Mapping[str, torch.Tensor],
                    **extra: Any) -> Path:
    """Write `{'state_dict': ..., **extra}` with torch.save; readable by the original code too."""
    sd = module_or_sd.state_dict() if isinstance(module_or_sd, nn.Module) else module_or_sd
    path = Path(path)
    with atomic_write(path) as tmp:
        torch.save({"state_dict": dict(sd), **extra}, tmp)
    return path


# Lightning shells a trained config names -> the plain cores with the same weights (no training loss).
# Inference builds the cores, so it imports no training code; the keys are the same.
_FIRST_STAGES = ("VQModel", "GumbelVQ", "EMAVQ", "VQSegmentationModel", "VQNoDiscModel")
INFERENCE_TARGETS = {
    "taming.models.cond_transformer.Net2NetTransformer": "taming.transformer.net2net.Net2Net",
    "taming.training.transformer.Net2NetTransformer": "taming.transformer.net2net.Net2Net",
    **{f"{package}.{name}": f"taming.tokenizer.inference.{name}"
       for name in _FIRST_STAGES for package in ("taming.models.vqgan", "taming.training.first_stage")},
}


def for_inference(node: Any) -> Any:
    """A plain config tree with every training-shell `target` replaced by its inference core."""
    if isinstance(node, list):
        return [for_inference(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: for_inference(v) for k, v in node.items()}
    if isinstance(out.get("target"), str):
        out["target"] = INFERENCE_TARGETS.get(out["target"], out["target"])
    return out


def load_model(config_path: str | Sequence[str], ckpt: str | None, overrides: list[str]) -> tuple[Any, Any]:
    """Build the config's model for inference (the plain core of a training shell, see INFERENCE_TARGETS)
    and load `ckpt` into it; several config files merge as `taming train -b` does."""
    paths = [str(config_path)] if isinstance(config_path, (str, Path)) else [str(p) for p in config_path]
    config = load_configs(paths, overrides)
    if "model" not in config:
        raise ConfigError(f"{' + '.join(map(str, paths))}: no model: section")
    model = instantiate_from_config(for_inference(to_plain(config.model)), where="model")
    if ckpt:
        init_from_ckpt(model, ckpt)
    return model.eval(), config
