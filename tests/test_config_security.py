"""Config targets are allow-listed on every path that builds from a config; env values stay secret."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from taming.checkpoint import load_model
from taming.cli.main import main
from taming.config import (ALLOW_ENV, CONFIG_FUNCTIONS, REFUSED_TARGETS, ConfigError, allow_imports, fix_allow_list,
                           get_obj_from_str, instantiate_from_config, load_config, reset_allow_list)
from helpers import seg_transformer_config, vqgan_config, write_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_allow_list_leaks(monkeypatch):
    """--allow-import writes $TAMING_ALLOW_IMPORTS: each test starts without it and leaves none behind."""
    monkeypatch.delenv("TAMING_ALLOW_IMPORTS", raising=False)


def popen_node(marker: Path) -> dict:
    """What a stranger's config would hold: a target that runs a program (here: creates `marker`)."""
    return {"target": "subprocess.Popen", "params": {"args": ["touch", str(marker)]}}


@pytest.mark.parametrize("target", ["os.system", "subprocess.Popen", "builtins.eval", "main.os.system",
                                    "pytorch_lightning.core.saving.load_hparams_from_yaml", "antigravity.x"])
def test_targets_outside_the_allow_list_are_refused_before_import(target):
    with pytest.raises(ConfigError) as err:
        get_obj_from_str(target, "model.target")
    top = target.split(".")[0]
    assert f"refusing to import {target!r}" in str(err.value) and f"--allow-import {top}" in str(err.value)
    assert f"TAMING_ALLOW_IMPORTS={top}" in str(err.value)
    assert "antigravity" not in sys.modules  # checked before importing (an import alone can run code)


@pytest.mark.parametrize("target", ["taming.checkpoint.os", "taming.config.importlib", "taming.training.safety.signal",
                                    "taming.cli.main.main", "taming.config.__builtins__", "taming.config._refuse"])
def test_names_reachable_through_allowed_modules_are_refused(target):
    """An allowed module's imports (os, signal) and private names are not targets."""
    with pytest.raises(ConfigError, match="refusing to import"):
        get_obj_from_str(target)


def test_allowed_targets_and_the_users_word(monkeypatch):
    assert get_obj_from_str("pytorch_lightning.callbacks.ModelCheckpoint").__module__.startswith("lightning.pytorch")
    assert get_obj_from_str("torch.optim.Adam") is torch.optim.Adam
    assert get_obj_from_str("main.DataModuleFromConfig").__name__ == "DataModuleFromConfig"
    with pytest.raises(ConfigError, match="refusing"):
        get_obj_from_str("collections.OrderedDict")
    monkeypatch.setenv("TAMING_ALLOW_IMPORTS", "json,collections")
    reset_allow_list()  # a new command: the variable is read when it starts
    assert get_obj_from_str("collections.OrderedDict") is __import__("collections").OrderedDict


def test_nested_malicious_node_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    cfg = seg_transformer_config(None, None)["model"]
    cfg["params"]["first_stage_config"] = popen_node(marker)
    with pytest.raises(ConfigError, match=r"model.params.first_stage_config.target: refusing to import 'subprocess.Popen'"):
        instantiate_from_config(cfg, where="model")
    assert not marker.exists()


def _one_line(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_train_top_level_and_nested(tmp_path, capsys):
    marker = tmp_path / "ran"
    top = vqgan_config()
    top["model"] = {"base_learning_rate": 1.0, **popen_node(marker)}
    nested = vqgan_config()
    nested["model"]["params"]["lossconfig"] = {"target": "os.system", "params": {"command": f"touch {marker}"}}
    for name, cfg in (("top", top), ("nested", nested)):
        path = write_config(tmp_path / f"{name}.yaml", cfg)
        assert main(["train", "-b", str(path), "-t", "-l", str(tmp_path / "logs")]) == 2
        err = _one_line(capsys)
        assert len(err) == 1 and err[0].startswith("taming train: error: ") and "refusing to import" in err[0], err
        assert "--allow-import" in err[0]
    assert not marker.exists()


def strangers_run(tmp_path: Path, marker: Path) -> Path:
    """A downloaded run folder whose saved config nests a target that runs a program."""
    run = tmp_path / "logs" / "2026-01-01T00-00-00_stranger"
    (run / "checkpoints").mkdir(parents=True)
    (run / "configs").mkdir()
    torch.save({"state_dict": {}}, run / "checkpoints" / "last.ckpt")
    cfg = seg_transformer_config(None, None)
    cfg["model"]["params"]["first_stage_config"] = popen_node(marker)
    write_config(run / "configs" / "2026-01-01T00-00-00-project.yaml", cfg)
    return run


def test_resume_of_a_run_folder_with_a_malicious_config(tmp_path, capsys):
    """A downloaded run folder: its configs/*.yaml are read on resume and go through the same check."""
    marker = tmp_path / "ran"
    run = strangers_run(tmp_path, marker)
    assert main(["train", "-r", str(run), "-t"]) == 2
    err = _one_line(capsys)
    assert len(err) == 1 and "model.params.first_stage_config.target: refusing to import 'subprocess.Popen'" in err[0]
    assert not marker.exists()


def test_load_model_and_tokenize(tmp_path, capsys):
    marker = tmp_path / "ran"
    cfg = seg_transformer_config(None, None)
    cfg["model"]["params"]["first_stage_config"] = popen_node(marker)
    path = write_config(tmp_path / "tr.yaml", cfg)
    with pytest.raises(ConfigError, match="refusing to import 'subprocess.Popen'"):
        load_model(str(path), None, [])
    assert main(["tokenize", "--config", str(path), "--out", str(tmp_path / "codes")]) == 2
    err = _one_line(capsys)
    assert len(err) == 1 and err[0].startswith("taming tokenize: error: ") and "refusing to import" in err[0]
    assert not marker.exists()


def test_allow_import_flag_lets_a_package_through(tmp_path, capsys, monkeypatch):
    """`--allow-import` is the user's word: the target is imported (and here fails on its own terms)."""
    cfg = vqgan_config()
    cfg["model"]["params"]["lossconfig"] = {"target": "json.JSONDecoder", "params": {"strictt": True}}
    path = write_config(tmp_path / "c.yaml", cfg)
    assert main(["train", "-b", str(path), "--allow-import", "json", "-l", str(tmp_path / "logs")]) == 2
    err = _one_line(capsys)
    assert "unknown key 'strictt'; did you mean 'strict'?" in err[0], err


def test_console_refusal_exits_non_zero_with_one_line(tmp_path):
    marker = tmp_path / "ran"
    cfg = vqgan_config()
    cfg["model"]["params"]["lossconfig"] = popen_node(marker)
    path = write_config(tmp_path / "evil.yaml", cfg)
    env = {k: v for k, v in os.environ.items() if k != "TAMING_ALLOW_IMPORTS"}
    r = subprocess.run([sys.executable, "-m", "taming.cli.main", "train", "-b", str(path), "-t", "-l",
                        str(tmp_path / "logs")], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "refusing to import 'subprocess.Popen'" in r.stderr and not marker.exists()


def test_env_values_never_appear_in_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TAMING_TEST_SECRET", "hunter2-very-secret")
    cfg = vqgan_config()
    cfg["model"]["params"]["ddconfig"]["ch"] = "${oc.env:TAMING_TEST_SECRET}"
    path = write_config(tmp_path / "c.yaml", cfg)
    assert main(["train", "-b", str(path), "-l", str(tmp_path / "logs")]) == 2
    err = _one_line(capsys)
    assert len(err) == 1 and "model.params.ddconfig.ch: expected int" in err[0], err
    assert "hunter2" not in err[0] and "${oc.env:TAMING_TEST_SECRET}" in err[0]
    with pytest.raises(ConfigError) as exc:
        instantiate_from_config(load_config(path).model, where="model")
    assert "hunter2" not in str(exc.value)


def test_app_loading_a_strangers_run_folder(tmp_path):
    """The app's loader (a run folder typed in the sidebar) builds through the same check."""
    from taming.generation.runs import load_run, resolve_run

    marker = tmp_path / "ran"
    run = strangers_run(tmp_path, marker)
    with pytest.raises(ConfigError, match=r"first_stage_config.target: refusing to import 'subprocess.Popen'"):
        load_run(resolve_run(str(run)))
    assert not marker.exists()


def test_eval_of_a_strangers_run_folder(tmp_path, capsys):
    marker = tmp_path / "ran"
    run = strangers_run(tmp_path, marker)
    assert main(["eval", "likelihood", "-r", str(run)]) == 2
    err = _one_line(capsys)
    assert len(err) == 1 and "refusing to import 'subprocess.Popen'" in err[0] and "--allow-import subprocess" in err[0]
    assert not marker.exists()


@pytest.mark.parametrize("command", [["sample", "-n", "1"], ["reconstruct", "{png}"], ["sample-window", "--condition", "{png}"],
                                     ["sample-conditional"], ["sample-scene", "--layout", "{png}"]])
def test_sampling_commands_on_a_strangers_run_folder(tmp_path, capsys, command):
    from PIL import Image

    png = tmp_path / "x.png"
    Image.new("RGB", (16, 16)).save(png)
    marker = tmp_path / "ran"
    run = strangers_run(tmp_path, marker)
    assert main([c.format(png=png) for c in command] + ["-r", str(run), "-o", str(tmp_path / "out")]) == 2
    err = _one_line(capsys)
    assert len(err) == 1 and "refusing to import 'subprocess.Popen'" in err[0], err
    assert not marker.exists()


def test_allow_import_takes_effect_as_it_is_parsed():
    import argparse

    from taming.config import add_allow_import

    parser = argparse.ArgumentParser()
    add_allow_import(parser)
    args = parser.parse_args(["--allow-import", "json", "--allow-import", "csv,zlib"])
    assert args.allow_import == ["json", "csv,zlib"]
    assert os.environ["TAMING_ALLOW_IMPORTS"] == "json,csv,zlib"
    assert get_obj_from_str("json.JSONDecoder").__name__ == "JSONDecoder"


def test_app_allow_import_reaches_the_server(monkeypatch):
    """`taming app --allow-import PKG`: the page runs in the Streamlit process that `taming app` becomes,
    which inherits $TAMING_ALLOW_IMPORTS."""
    from taming.app.launch import build_parser

    monkeypatch.delenv("TAMING_ALLOW_IMPORTS", raising=False)
    args = build_parser().parse_args(["--allow-import", "mypkg"])
    assert args.allow_import == ["mypkg"] and os.environ["TAMING_ALLOW_IMPORTS"] == "mypkg"


# ---- a config cannot change the policy, nor call a function of the package --------------------------
def switch_off(marker: Path) -> tuple[dict, dict]:
    """Issue 20's probe: a node that widens the allow-list, then a node that needs the wider list."""
    return ({"target": "taming.config.allow_imports", "params": {"packages": ["os", "posix"]}},
            {"target": "os.system", "params": {"command": f"touch {marker}"}})


def test_train_config_cannot_switch_the_allow_list_off(tmp_path, capsys):
    marker = tmp_path / "ran"
    cfg = vqgan_config()
    opener, runner = switch_off(marker)
    cfg["lightning"]["callbacks"] = {"open": opener, "run": runner}
    path = write_config(tmp_path / "c.yaml", cfg)
    assert main(["train", "-b", str(path), "-t", "-l", str(tmp_path / "logs")]) == 2
    err = _one_line(capsys)
    assert len(err) == 1 and "lightning.callbacks.open.target: refusing to import 'taming.config.allow_imports'" in err[0]
    assert "--allow-import" not in err[0]  # no flag allows the policy itself
    assert not marker.exists() and os.environ.get("TAMING_ALLOW_IMPORTS") is None


def policy_run(tmp_path: Path, marker: Path, first: dict | None = None) -> Path:
    """A stranger's run folder: a permuter node built before the transformer node."""
    run = strangers_run(tmp_path, marker)
    opener, runner = switch_off(marker)
    cfg = seg_transformer_config(None, None)
    cfg["model"]["params"]["permuter_config"] = first or opener
    cfg["model"]["params"]["transformer_config"] = runner
    write_config(run / "configs" / "2026-01-01T00-00-00-project.yaml", cfg)
    return run


@pytest.mark.parametrize("command", [["train", "-r", "{run}", "-t"], ["sample-conditional", "-r", "{run}", "-o", "{out}"],
                                     ["sample-window", "-r", "{run}", "--condition", "{png}", "-o", "{out}/w.png"],
                                     ["eval", "likelihood", "-r", "{run}"],
                                     ["tokenize", "--config", "{config}", "--out", "{out}"]])
def test_run_folders_cannot_switch_the_allow_list_off(tmp_path, capsys, command):
    from PIL import Image

    marker = tmp_path / "ran"
    run = policy_run(tmp_path, marker)
    png = tmp_path / "x.png"
    Image.new("RGB", (16, 16)).save(png)
    names = {"run": run, "out": tmp_path / "out", "png": png,
             "config": run / "configs" / "2026-01-01T00-00-00-project.yaml"}
    assert main([c.format(**names) for c in command]) == 2
    err = _one_line(capsys)
    assert len(err) == 1 and "permuter_config.target: refusing to import 'taming.config.allow_imports'" in err[0], err
    assert not marker.exists() and os.environ.get("TAMING_ALLOW_IMPORTS") is None


def test_the_apps_path_field_cannot_switch_the_allow_list_off(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from taming.app.launch import PAGE

    marker = tmp_path / "ran"
    run = policy_run(tmp_path, marker)
    monkeypatch.chdir(tmp_path)  # typed paths under the start folder are opened
    monkeypatch.setattr(sys, "argv", [str(PAGE)])
    at = AppTest.from_file(str(PAGE), default_timeout=60).run()
    at.text_input(key="target").input(str(run)).run()
    assert not at.exception and len(at.error) == 1
    assert "refusing to import 'taming.config.allow_imports'" in at.error[0].value
    assert not marker.exists() and os.environ.get("TAMING_ALLOW_IMPORTS") is None


@pytest.mark.parametrize("target", ["taming.generation.files.save_json", "taming.checkpoint.save_state_dict",
                                    "taming.data.webdataset.ShardWriter", "taming.training.trainer.build_job",
                                    "taming.images.save_grid", "torch.nn.init.uniform_", "torch.optim.swa_utils.update_bn"])
def test_functions_and_helpers_of_allowed_packages_are_not_targets(tmp_path, capsys, target):
    """What a config builds is a class of a known kind; functions (which write files anywhere) are refused."""
    marker = tmp_path / "written.json"
    run = policy_run(tmp_path, tmp_path / "ran", first={"target": target, "params": {"data": {}, "path": str(marker)}})
    assert main(["eval", "likelihood", "-r", str(run)]) == 2
    err = _one_line(capsys)
    assert len(err) == 1 and f"permuter_config.target: refusing to build {target!r}: it is a " in err[0], err
    assert not marker.exists()


def test_the_allow_list_is_fixed_once_read(monkeypatch):
    monkeypatch.setenv(ALLOW_ENV, "json")
    assert fix_allow_list(["csv"]) == ("json", "csv") and os.environ[ALLOW_ENV] == "json,csv"
    allow_imports(["csv", "json"])  # already on it: nothing changes (a DDP rank parses the same command line)
    with pytest.raises(ConfigError, match="cannot allow importing os, posix: the import allow-list is fixed"):
        allow_imports(["os,posix"])
    with pytest.raises(ConfigError, match="cannot allow importing os"):
        fix_allow_list(["os"])
    monkeypatch.setenv(ALLOW_ENV, "os")  # nor is the variable read again
    with pytest.raises(ConfigError, match="refusing to import 'os.system'"):
        get_obj_from_str("os.system")
    assert get_obj_from_str("json.JSONDecoder").__name__ == "JSONDecoder"


def test_the_fixed_list_reaches_processes_started_from_here():
    """A process started from here (a `spawn` dataloader worker, a DDP rank, the app's server) reads the same list."""
    fix_allow_list(["json"])
    code = "from taming.config import fix_allow_list; print(fix_allow_list())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.strip() == "('json',)", out.stderr


def test_every_admitted_callable_is_a_class_a_config_builds():
    """Walk every public name of every module of the built-in packages: whatever get_obj_from_str admits is
    a model, loss, dataset, data module, callback, logger, optimizer or scheduler, or on the explicit lists."""
    import importlib
    import inspect
    import pkgutil

    from lightning.pytorch import LightningDataModule
    from lightning.pytorch.callbacks import Callback
    from lightning.fabric.loggers import Logger
    from torch.optim.lr_scheduler import LRScheduler
    from torch.utils.data import Dataset

    kinds = (torch.nn.Module, Dataset, LightningDataModule, Callback, Logger, torch.optim.Optimizer, LRScheduler)
    plain_classes = {"taming.lr_scheduler.LambdaWarmUpCosineScheduler", "taming.lr_scheduler.LambdaLinearScheduler"}
    explicit_functions: set[str] = set()  # the short explicit list: none
    assert set(CONFIG_FUNCTIONS) == explicit_functions
    admitted, bad = set(), []
    for root in ("taming", "torch.nn", "torch.optim", "lightning.pytorch.callbacks", "lightning.pytorch.loggers"):
        package = importlib.import_module(root)
        for name in [root] + [m.name for m in pkgutil.walk_packages(package.__path__, root + ".")]:
            if any(name == r or name.startswith(r + ".") for r in REFUSED_TARGETS):
                continue  # refused before import (taming.app.page would start a page)
            module = importlib.import_module(name)
            for attr in (a for a in dir(module) if not a.startswith("_")):
                try:
                    obj = get_obj_from_str(f"{name}.{attr}")
                except ConfigError:
                    continue
                home = f"{obj.__module__}.{obj.__qualname__}"
                admitted.add(home)
                ok = (inspect.isclass(obj) and (issubclass(obj, kinds) or home in plain_classes)) or home in explicit_functions
                if not ok:
                    bad.append(f"{name}.{attr} ({home})")
    assert not bad, bad
    assert "taming.training.first_stage.VQModel" in admitted and "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint" in admitted
    assert len(admitted) > 200  # the walk reached torch.nn's layers, optimizers, schedulers, loggers
