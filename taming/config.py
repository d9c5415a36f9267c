"""Config loading and validated instantiation of original-format `target:`/`params:` nodes.

The original configs name classes by dotted path (`taming.models.vqgan.VQModel`,
`main.DataModuleFromConfig`). We resolve those paths, check every given parameter against the
constructor's signature and type hints and fail with one message naming the key path (and the
closest valid name) instead of a TypeError deep inside a model.

Configs come from strangers (run folders, downloaded checkpoints), so a `target:` is checked twice
by `get_obj_from_str`, the only function here that imports anything:
- before the import, its package: taming, torch.nn, torch.optim, Lightning callbacks/loggers
  (ALLOWED_TARGETS), or one the user named (`--allow-import`, $TAMING_ALLOW_IMPORTS);
- after it, what it is: from the built-in packages only a class of a kind a config builds (a model
  or loss (nn.Module), dataset, data module, callback, logger, optimizer, scheduler; BUILDABLE_KINDS,
  CONFIG_CLASSES), never a function, a method or a helper (CONFIG_FUNCTIONS, empty, is the explicit
  list of exceptions). Packages the user named are trusted whole.
The allow-list is fixed (`fix_allow_list`) once the command line has been read, at the latest when
the first target is resolved: later calls cannot widen it and later changes of the environment
variable are not read, so nothing a config builds can change the policy. Processes started from
here (DDP ranks, dataloader workers, the app's server) inherit the same list through the variable.
Every path that builds from a config (train, resume, sampling, the app, load_model, the nested
`first_stage_config`s) goes through it.

`${oc.env:NAME}` values are recorded when resolved and masked in every ConfigError message.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from omegaconf.resolvers import oc

from taming.config_types import check_value, did_you_mean, type_hints

ALLOW_ENV = "TAMING_ALLOW_IMPORTS"
# Packages a config target may name without the user's word. `main.*`, `cutlit.*` and
# `pytorch_lightning.*` targets of the original are allowed through TARGET_ALIASES below.
ALLOWED_TARGETS = ("taming", "torch.nn", "torch.optim", "lightning.pytorch.callbacks", "lightning.pytorch.loggers")
# ... except what is never built from a config: the entry points, the app, and this policy itself.
REFUSED_TARGETS = ("taming.cli", "taming.app", "taming.config")
# From the built-in packages a target must be a class of one of these kinds (by the dotted names in its
# MRO, so that checking needs no import of Lightning): models and losses, datasets, data modules,
# callbacks, loggers, optimizers, learning-rate schedulers.
BUILDABLE_KINDS = frozenset({
    "torch.nn.modules.module.Module", "torch.utils.data.dataset.Dataset", "torch.optim.optimizer.Optimizer",
    "torch.optim.lr_scheduler.LRScheduler", "lightning.pytorch.core.datamodule.LightningDataModule",
    "lightning.pytorch.callbacks.callback.Callback", "lightning.fabric.loggers.logger.Logger"})
# Plain classes a config builds: the original's schedules (step -> value callables).
CONFIG_CLASSES = frozenset({"taming.lr_scheduler.LambdaWarmUpCosineScheduler",
                            "taming.lr_scheduler.LambdaLinearScheduler"})
# Functions a config may call: none so far (tests/test_config_security.py walks what is admitted).
CONFIG_FUNCTIONS: frozenset[str] = frozenset()
ALLOW_IMPORT_HELP = ("also let config targets name this package (repeatable, or comma-separated); by default "
                     "only taming, torch.nn, torch.optim and Lightning callbacks/loggers are imported from a config")
_env_values: dict[str, str] = {}  # resolved ${oc.env:NAME} value -> NAME, masked in messages


def mask_env_values(text: str) -> str:
    """text with every resolved `${oc.env:NAME}` value put back as that text."""
    for value, name in sorted(_env_values.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(value, "${oc.env:" + name + "}")
    return text


class ConfigError(ValueError):
    """A config value or key a user wrote is wrong; the message says which and where.

    Values that came from `${oc.env:...}` never show: they are replaced by that text."""

    def __str__(self) -> str:
        return mask_env_values(super().__str__())


def _recording_env(key: str, default: Any = oc._DEFAULT_MARKER_) -> Any:
    value = oc.env(key, default) if default is not oc._DEFAULT_MARKER_ else oc.env(key)
    if isinstance(value, str) and len(value) >= 3:  # shorter ones ("1", "on") are no secret and too common
        _env_values[value] = key
    return value


OmegaConf.register_resolver("oc.env", _recording_env, replace=True, annotation_validation="off")


_fixed: tuple[str, ...] | None = None  # the packages the user named, once fixed (None: not yet)


def _split(packages: Iterable[str]) -> list[str]:
    return [p.strip() for item in packages for p in str(item).split(",") if p.strip()]


def allow_imports(packages: Iterable[str]) -> None:
    """Let config targets name these packages too (`--allow-import PKG`, repeatable or comma-separated).

    Only while the command line is read: once the allow-list is fixed, a package not already on it
    is refused (ConfigError), whoever asks. They are added to $TAMING_ALLOW_IMPORTS, so processes
    started from here (DDP ranks, the app's server) hold the same list."""
    added = _split(packages)
    if _fixed is not None:
        new = [p for p in added if p not in _fixed]
        if new:
            raise ConfigError(f"cannot allow importing {', '.join(new)}: the import allow-list is fixed once the "
                              f"command line has been read; pass --allow-import {new[0]} on the command line "
                              f"or set {ALLOW_ENV}={new[0]} before starting")
        return
    if added:
        os.environ[ALLOW_ENV] = ",".join(dict.fromkeys(_env_packages() + added))


def fix_allow_list(packages: Iterable[str] = ()) -> tuple[str, ...]:
    """Add `packages` (the command line's) and fix the allow-list for the rest of this process.

    Called by the commands once their arguments are parsed, and by get_obj_from_str before the first
    target is resolved; $TAMING_ALLOW_IMPORTS is read here, once, and left holding exactly the list."""
    global _fixed
    allow_imports(packages)
    if _fixed is None:
        _fixed = tuple(_env_packages())
        if _fixed:
            os.environ[ALLOW_ENV] = ",".join(_fixed)
    return _fixed


def reset_allow_list() -> None:
    """Forget the fixed list: a new command in this process (taming.cli.main.main) or a test reads its
    own command line and environment. Nothing a config builds calls it (see test_config_security)."""
    global _fixed
    _fixed = None


class _AllowImportAction(argparse.Action):
    """`--allow-import PKG` takes effect as it is parsed, so no command can forget to apply it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        allow_imports([values])
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])


def add_allow_import(parser: argparse.ArgumentParser) -> None:
    """The `--allow-import PKG` flag of every command that builds from a config (CLI and app alike)."""
    parser.add_argument("--allow-import", dest="allow_import", action=_AllowImportAction, default=[],
                        metavar="PKG", help=ALLOW_IMPORT_HELP)


def _env_packages() -> list[str]:
    return _split([os.environ.get(ALLOW_ENV, "")])


def allowed_packages() -> tuple[str, ...]:
    return ALLOWED_TARGETS + fix_allow_list()


def _under(name: str, packages: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _refuse(target: str, where: str, why: str = "") -> ConfigError:
    top = target.split(".")[0]
    if _under(resolve_alias(target), REFUSED_TARGETS):  # no flag allows these
        return ConfigError(f"{where}: refusing to import {target!r}{why}: the command line, the app and the "
                           "import policy are never built from a config")
    return ConfigError(f"{where}: refusing to import {target!r}{why}: config targets may name only "
                       f"{', '.join(ALLOWED_TARGETS)}; to allow it, pass --allow-import {top} "
                       f"or set {ALLOW_ENV}={top}")


# Targets of the original repository that lived outside the `taming` package (its main.py, and
# pytorch_lightning 1.x callbacks), for data modules and callbacks alike.
TARGET_ALIASES = {
    "main.DataModuleFromConfig": "taming.training.datamodule.DataModuleFromConfig",
    "cutlit.DataModuleFromConfig": "taming.training.datamodule.DataModuleFromConfig",
    "main.SetupCallback": "taming.training.callbacks.SetupCallback",
    "main.ImageLogger": "taming.training.callbacks.ImageLogger",
    "main.LearningRateMonitor": "lightning.pytorch.callbacks.LearningRateMonitor",
    "main.CUDACallback": "taming.training.callbacks.StepTimer",
}
# Lightning 1.x package names: `pytorch_lightning.callbacks.X` is `lightning.pytorch.callbacks.X`.
PREFIX_ALIASES = {"pytorch_lightning.": "lightning.pytorch."}

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
    overrides = list(overrides)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
    try:  # a YAML file holding a list or a scalar, an unparsable override value, ...
        config = OmegaConf.create(merged)
        return OmegaConf.merge(config, OmegaConf.from_dotlist(overrides)) if overrides else config
    except Exception as exc:
        text = " ".join(str(exc).split())
        raise ConfigError(f"cannot merge {' + '.join(map(str, paths)) or 'overrides'} "
                          f"{' '.join(overrides)}: {text}") from None


def load_configs(paths: Sequence[str | Path], overrides: Sequence[str] = ()) -> DictConfig:
    """`taming train -b` files merged left to right, then key.path=value overrides (as load_config)."""
    return load_config(*paths, overrides=overrides)


def to_plain(value: Any) -> Any:
    """OmegaConf containers to plain dicts/lists (interpolations resolved), anything else unchanged."""
    if isinstance(value, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(value, resolve=True)
        except OmegaConfBaseException as exc:  # ${missing.key}, ${oc.env:UNSET}: the message names the key
            raise ConfigError(f"cannot resolve the config: {' '.join(str(exc).split())}") from None
    return value


def resolve_alias(target: str) -> str:
    target = TARGET_ALIASES.get(target, target)
    for old, new in PREFIX_ALIASES.items():
        if target.startswith(old):
            return new + target[len(old):]
    return target


def _dotted(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def is_buildable(obj: Any) -> bool:
    """A class of a kind a config builds, or one of the explicit classes and functions."""
    if inspect.isclass(obj):
        return _dotted(obj) in CONFIG_CLASSES or any(_dotted(c) in BUILDABLE_KINDS for c in obj.__mro__)
    return _dotted(obj) in CONFIG_FUNCTIONS


def _what(obj: Any) -> str:
    if inspect.isclass(obj):
        return "a class that is no model, loss, dataset, data module, callback, logger, optimizer or scheduler"
    return "a method" if inspect.ismethod(obj) else "a function" if callable(obj) else f"a {type(obj).__name__}"


def _import_checked(target: str, where: str) -> tuple[str, Any]:
    """(resolved target, object) of an allowed package, imported only after the package was checked."""
    if not isinstance(target, str) or "." not in target:
        raise ConfigError(f"{where}: {target!r} is not a dotted import path like 'taming.models.vqgan.VQModel'")
    original, target = target, resolve_alias(target)
    if not _under(target, allowed_packages()) or _under(target, REFUSED_TARGETS):
        raise _refuse(original, where)
    module_name, _, attr = target.rpartition(".")
    if attr.startswith("_"):
        raise _refuse(original, where, " (a private name)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{where}: cannot import module {module_name!r} for target {target!r} ({exc})") from exc
    try:
        return target, getattr(module, attr)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        raise ConfigError(f"{where}: module {module_name!r} has no {attr!r}{did_you_mean(attr, names)}") from None


def get_obj_from_str(target: str, where: str = "target") -> Any:
    """Import `package.module.Name` of an allowed package; aliases map the original's other targets.

    The package is checked before anything is imported (an import alone can run code), and the
    object found after: a name an allowed module merely imported from elsewhere (`os`, `run`) is
    refused unless its own module is allowed too, and from the built-in packages only a class a
    config builds is returned (`is_buildable`), never a function such as a file writer.
    """
    original = target
    target, obj = _import_checked(target, where)
    module_name = target.rpartition(".")[0]
    home = getattr(obj, "__module__", None)
    if inspect.ismodule(obj) or not callable(obj) or not isinstance(home, str) or not _under(home, allowed_packages()):
        raise _refuse(original, where, f" (it is {home or type(obj).__name__}'s, not {module_name}'s)")
    if _under(home, REFUSED_TARGETS):
        raise ConfigError(f"{where}: refusing to build {original!r}: it is {home}'s, and the command line, the app "
                          "and the import policy are never built from a config")
    users = _under(home, fix_allow_list()) and not _under(home, ALLOWED_TARGETS)  # the user's word: trusted
    if not users and not is_buildable(obj):
        raise ConfigError(f"{where}: refusing to build {original!r}: it is {_what(obj)}; a config target must be a class "
                          "a config builds (a model, loss, dataset, data module, callback, logger, optimizer or "
                          "scheduler)")
    return obj


def get_data_from_str(target: str, where: str = "target") -> Any:
    """A module-level list, tuple, set or mapping of an allowed package (e.g. the original's category
    lists named by `category_allow_list_target`), checked as get_obj_from_str checks a target."""
    _, obj = _import_checked(target, where)
    if not isinstance(obj, (list, tuple, set, frozenset, dict)):
        raise ConfigError(f"{where}: {target!r} is {_what(obj)}, not a list or mapping of data")
    return obj


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
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed)} "
                              f"(allowed: {', '.join(sorted(allowed))})")


def validate_params(obj: Any, params: Mapping[str, Any], where: str) -> None:
    """Unknown keys (unless the callable takes **kwargs) and values that do not fit the type hints."""
    names, var_kw = accepted_params(obj)
    if not var_kw:
        check_keys(params.keys(), names, where)
    check_types(obj, params, where)


def constructor_hints(obj: Any) -> dict[str, Any]:
    """Type hints of a callable's parameters; for a class, its __init__'s, and where that passes
    **kwargs on, its bases' for the keys it does not name itself (VQSegmentationModel -> VQModel)."""
    if not inspect.isclass(obj):
        return type_hints(obj)
    hints: dict[str, Any] = {}
    for cls in obj.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None or cls is object:
            continue
        for key, hint in type_hints(init).items():
            hints.setdefault(key, hint)
        try:
            forwards = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(init).parameters.values())
        except (TypeError, ValueError):  # a constructor written in C: no signature to follow
            break
        if not forwards:
            break
    return hints


def check_types(obj: Any, params: Mapping[str, Any], where: str) -> None:
    """Values that do not fit the type hints of the callable (or class constructor) they feed."""
    hints = constructor_hints(obj)
    for key, value in params.items():
        if key in hints:
            check_value(value, hints[key], f"{where}.{key}", ConfigError)


def instantiate_from_config(config: Any, where: str = "config", **extra: Any) -> Any:
    """Build `target(**params, **extra)` after checking the node and its params.

    `where` is the dotted location of the node in the user's config, used in messages.
    """
    config = to_plain(config)
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
