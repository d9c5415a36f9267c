"""Config loading and validated instantiation of original-format `target:`/`params:` nodes.

The original configs name classes by dotted path (`taming.models.vqgan.VQModel`,
`main.DataModuleFromConfig`). We resolve those paths, check every given parameter against the
constructor's signature and fail with one message naming the unknown key (and the closest valid
one) instead of a TypeError deep inside a model.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf


class ConfigError(ValueError):
    """A config value or key a user wrote is wrong; the message says which and where."""


# Targets of the original repository that lived outside the `taming` package (its main.py, and
# pytorch_lightning 1.x callbacks), for data modules and callbacks alike.
TARGET_ALIASES = {
    "main.DataModuleFromConfig": "taming.training.datamodule.DataModuleFromConfig",
    "cutlit.DataModuleFromConfig": "taming.training.datamodule.DataModuleFromConfig",
    "main.SetupCallback": "taming.training.callbacks.SetupCallback",
    "main.ImageLogger": "taming.training.callbacks.ImageLogger",
    "main.LearningRateMonitor": "lightning.pytorch.callbacks.LearningRateMonitor",
    "main.CUDACallback": "taming.training.callbacks.StepTimer",
    "pytorch_lightning.callbacks.ModelCheckpoint": "lightning.pytorch.callbacks.ModelCheckpoint",
    "pytorch_lightning.callbacks.LearningRateMonitor": "lightning.pytorch.callbacks.LearningRateMonitor",
}

# Keys a `target:` node may hold besides `target` and `params`.
NODE_KEYS = {"target", "params", "base_learning_rate"}


def _read_yaml(path: str | Path) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError and friends
        raise ConfigError(f"cannot parse config {path}: {exc}") from exc


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


def load_config(*paths: str | Path, overrides: Iterable[str] = ()) -> DictConfig:
    """Merge YAML files left to right (see merge_nodes), then dotted `key.path=value` overrides."""
    merged: Any = {}
    for path in paths:
        merged = merge_nodes(merged, OmegaConf.to_container(_read_yaml(path), resolve=False))
    config = OmegaConf.create(merged)
    overrides = list(overrides)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
    return OmegaConf.merge(config, OmegaConf.from_dotlist(overrides)) if overrides else config


def load_configs(paths: Sequence[str | Path], overrides: Sequence[str] = ()) -> DictConfig:
    """`taming train -b` files merged left to right, then key.path=value overrides (as load_config)."""
    return load_config(*paths, overrides=overrides)


def to_plain(value: Any) -> Any:
    """OmegaConf containers to plain dicts/lists, anything else unchanged."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def get_obj_from_str(target: str, where: str = "target") -> Any:
    """Import `package.module.Name`; aliases map the original's non-package targets."""
    if not isinstance(target, str) or "." not in target:
        raise ConfigError(f"{where}: {target!r} is not a dotted import path like 'taming.models.vqgan.VQModel'")
    target = TARGET_ALIASES.get(target, target)
    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{where}: cannot import module {module_name!r} for target {target!r} ({exc})") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        hint = difflib.get_close_matches(attr, names, n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"{where}: module {module_name!r} has no {attr!r}{extra}") from None


def accepted_params(obj: Any) -> tuple[set[str], bool]:
    """Names a callable accepts, and whether it also takes **kwargs."""
    fn = obj.__init__ if inspect.isclass(obj) else obj
    sig = inspect.signature(fn)
    names, var_kw = set(), False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
            names.add(p.name)
    return names, var_kw


def check_keys(given: Iterable[str], allowed: Iterable[str], where: str) -> None:
    """Raise ConfigError naming the first unknown key and its closest allowed spelling."""
    allowed = set(allowed)
    for key in given:
        if key not in allowed:
            hint = difflib.get_close_matches(key, sorted(allowed), n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"{where}: unknown key {key!r}{extra} (allowed: {', '.join(sorted(allowed))})")


def validate_params(obj: Any, params: Mapping[str, Any], where: str) -> None:
    names, var_kw = accepted_params(obj)
    if not var_kw:
        check_keys(params.keys(), names, where)


def instantiate_from_config(config: Any, where: str = "config", **extra: Any) -> Any:
    """Build `target(**params, **extra)` after checking the node and its params.

    `where` is the dotted location of the node in the user's config, used in messages.
    """
    if isinstance(config, (DictConfig, ListConfig)):
        config = OmegaConf.to_container(config, resolve=True)
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'target' and 'params', got {config!r}")
    if "target" not in config:
        raise ConfigError(f"{where}: missing 'target' (keys present: {', '.join(map(str, config)) or 'none'})")
    check_keys(config.keys(), NODE_KEYS, where)
    obj = get_obj_from_str(config["target"], f"{where}.target")
    params = dict(config.get("params") or {})
    params.update(extra)
    validate_params(obj, params, f"{where}.params")
    return obj(**params)
