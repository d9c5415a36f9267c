"""`taming train` command line: flags, overrides, config merging, errors, learning-rate rule."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from taming.cli.main import main
from taming.cli.train import parse_args
from taming.config import ConfigError
from taming.config import load_configs
from taming.training.lightning_settings import parse_gpus, trainer_kwargs
from taming.training.trainer import TrainOptions, build_job
from helpers import vqgan_config, write_config

ROOT = Path(__file__).resolve().parents[1]


def test_short_and_long_flags_mean_the_same():
    short, _ = parse_args(["-b", "a.yaml", "b.yaml", "-t", "-n", "run", "-s", "7", "-f", "_x", "-l", "out",
                           "-p", "proj"])
    long, _ = parse_args(["--base", "a.yaml", "b.yaml", "--train", "True", "--name", "run", "--seed", "7",
                          "--postfix", "_x", "--logdir", "out", "--project", "proj"])
    assert short == long
    assert short.base == ["a.yaml", "b.yaml"] and short.train and short.seed == 7 and short.postfix == "_x"
    resume, _ = parse_args(["-r", "logs/run", "-t", "--no-test"])
    assert resume.resume == "logs/run" and resume.no_test
    defaults, _ = parse_args([])
    assert defaults == TrainOptions()  # seed 23, no training, logs/ as the original
    assert defaults.seed == 23 and defaults.train is False and defaults.logdir == "logs"


def test_overrides_anywhere_and_engine_flags():
    opts, _ = parse_args(["-b", "a.yaml", "model.params.embed_dim=3", "b.yaml", "-t", "data.params.batch_size=4",
                          "--gpus", "0,1", "--strategy", "ddp", "--precision", "bf16-mixed", "--max_steps", "9",
                          "--num_nodes", "2", "--devices", "2", "--accelerator", "gpu"])
    assert opts.base == ["a.yaml", "b.yaml"]
    assert opts.overrides == ["model.params.embed_dim=3", "data.params.batch_size=4"]
    assert (opts.gpus, opts.strategy, opts.precision, opts.max_steps, opts.num_nodes) == ("0,1", "ddp", "bf16-mixed",
                                                                                         9, 2)


def test_gpus_keep_their_original_meaning():
    assert parse_gpus("0,1") == [0, 1]
    assert parse_gpus("0,") == [0]  # the original's "one GPU, id 0"
    assert parse_gpus("3") == 3  # a count
    kw = trainer_kwargs(OmegaConf.create(), TrainOptions(gpus="0,1"))
    assert kw["accelerator"] == "gpu" and kw["devices"] == [0, 1]
    # Lightning 1.x keys in a config's lightning.trainer are translated, obsolete ones dropped
    legacy = OmegaConf.create({"trainer": {"gpus": "0,", "distributed_backend": "ddp", "weights_summary": "top",
                                           "max_epochs": 3, "benchmark": True}})
    kw = trainer_kwargs(legacy, TrainOptions(strategy=None))
    assert kw == {"accelerator": "gpu", "devices": [0], "strategy": "ddp", "max_epochs": 3, "benchmark": True}
    # the command line wins over the config
    assert trainer_kwargs(legacy, TrainOptions(accelerator="cpu", devices="2"))["devices"] == 2


def test_unknown_trainer_key_is_named_with_a_hint():
    with pytest.raises(ConfigError, match=r"lightning.trainer: unknown key 'max_stepz'; did you mean 'max_steps'"):
        trainer_kwargs(OmegaConf.create({"trainer": {"max_stepz": 3}}), TrainOptions())


def test_later_config_replaces_a_node_whose_target_changes(tmp_path):
    a = write_config(tmp_path / "a.yaml", {"data": {"target": "x.A", "params": {"batch_size": 2, "train": {
        "target": "x.Images", "params": {"size": 16, "length": 4}}}}})
    b = write_config(tmp_path / "b.yaml", {"data": {"target": "x.A", "params": {"batch_size": 8, "train": {
        "target": "x.Codes", "params": {"urls": ["c.tar"]}}}}})
    merged = OmegaConf.to_container(load_configs([str(a), str(b)], ["data.params.num_workers=0"]))
    assert merged == {"data": {"target": "x.A", "params": {"batch_size": 8, "num_workers": 0, "train": {
        "target": "x.Codes", "params": {"urls": ["c.tar"]}}}}}


def run_cli(args, capsys):
    rc = main(args)
    captured = capsys.readouterr()
    return rc, captured.err.strip().splitlines()


@pytest.mark.parametrize("extra,needle", [
    (["data.params.batch_sizee=3"], "data.params: unknown key 'batch_sizee'; did you mean 'batch_size'?"),
    (["model.params.embed_dimm=3"], "unknown key 'embed_dimm'"),
    (["data.params.train.params.lenght=3"], "data.params.train.params: unknown key 'lenght'; did you mean 'length'?"),
    (["lightning.trainer.max_stepz=3"], "lightning.trainer: unknown key 'max_stepz'"),
    (["--seed", "abc"], "argument -s/--seed: invalid int value: 'abc'"),
    (["--bogus"], "unrecognized argument '--bogus'"),
    (["-n", "x", "-r", "somewhere"], "-n/--name and -r/--resume cannot be given together"),
])
def test_user_errors_print_one_line_and_exit_2(tmp_path, capsys, extra, needle):
    cfg = write_config(tmp_path / "tiny.yaml", vqgan_config())
    rc, err = run_cli(["train", "-b", str(cfg), "-t", "-l", str(tmp_path / "logs"), *extra], capsys)
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("taming train: error: ") and needle in err[0], err
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_missing_files_exit_2(tmp_path, capsys):
    rc, err = run_cli(["train", "-b", str(tmp_path / "nope.yaml"), "-t"], capsys)
    assert rc == 2 and err == [f"taming train: error: config file not found: {tmp_path / 'nope.yaml'}"]
    rc, err = run_cli(["train", "-r", str(tmp_path / "no_run"), "-t"], capsys)
    assert rc == 2 and err == [f"taming train: error: --resume: cannot find {tmp_path / 'no_run'}"]
    rc, err = run_cli(["nonsense"], capsys)
    assert rc == 2 and "unknown command 'nonsense'" in err[0]


@pytest.mark.slow
def test_console_entry_point_exit_status(tmp_path):
    """The real process: exit status 2 and one line, no traceback."""
    r = subprocess.run([sys.executable, "-m", "taming.cli.main", "train", "-b", str(tmp_path / "x.yaml")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"taming train: error: config file not found: {tmp_path / 'x.yaml'}"]


def test_learning_rate_rule_is_applied_and_printed(tmp_path, capsys):
    cfg = write_config(tmp_path / "tiny.yaml", vqgan_config(batch=3, trainer={"accumulate_grad_batches": 2}))
    job = build_job(TrainOptions(base=[str(cfg)], logdir=str(tmp_path / "logs"), accelerator="cpu"))
    out = capsys.readouterr()
    assert job.model.learning_rate == pytest.approx(2 * 1 * 3 * 1.0e-4)
    assert ("Setting learning rate to 6.00e-04 = 2 (accumulate_grad_batches) * 1 (num_gpus) * 3 (batchsize) "
            "* 1.00e-04 (base_lr)") in out.out + out.err
    # the VQGAN optimizes manually: it accumulates itself; Lightning's own accumulation stays off
    assert job.model.accumulate_grad_batches == 2 and job.trainer.accumulate_grad_batches == 1
    assert job.lightning_config.trainer.accumulate_grad_batches == 2  # written to <now>-lightning.yaml
    assert job.paths.logdir.parent == tmp_path / "logs" and job.paths.logdir.name.endswith("_tiny")


def test_manual_optimization_under_ddp_finds_unused_parameters(tmp_path):
    """Generator and discriminator steps each leave the other's parameters without gradients."""
    cfg = write_config(tmp_path / "tiny.yaml", vqgan_config())
    job = build_job(TrainOptions(base=[str(cfg)], logdir=str(tmp_path / "logs"), accelerator="cpu", devices="2",
                                 strategy="ddp"))
    assert type(job.trainer.strategy).__name__ == "DDPStrategy"
    assert job.trainer.strategy._ddp_kwargs.get("find_unused_parameters") is True
    assert job.trainer.world_size == 2 and job.model.learning_rate == pytest.approx(2 * 2 * 1.0e-4)


def test_flags_are_generated_from_the_options_dataclass():
    """Every TrainOptions field but the overrides is a flag with the field's default; value-taking
    flags are exactly those that are not switches or lists."""
    import dataclasses

    from taming.cli.train import VALUE_OPTIONS, build_parser

    defaults = vars(build_parser().parse_args([]))
    fields = {f.name for f in dataclasses.fields(TrainOptions)} - {"overrides"}
    assert set(defaults) == fields
    assert TrainOptions(**defaults) == TrainOptions()
    assert {"-n", "--resume", "--max_steps", "-s"} <= VALUE_OPTIONS
    assert not {"-b", "--base", "-t", "--no-test", "-d"} & VALUE_OPTIONS


def test_importing_the_trainer_sets_no_global_warning_filter():
    """Expected Lightning warnings are silenced around fit and test only (expected_warnings_silenced)."""
    import importlib
    import warnings

    import taming.cli.train
    import taming.training.trainer

    with warnings.catch_warnings():
        warnings.resetwarnings()  # no filters: whatever the modules' top level adds shows
        importlib.reload(taming.training.trainer)
        importlib.reload(taming.cli.train)
        added = list(warnings.filters)
    assert added == []
