"""Every config value is checked against the constructor it feeds, nested settings included."""
from __future__ import annotations

import inspect

import pytest

from taming.cli.main import main
from taming.config import ConfigError, instantiate_from_config
from taming.tokenizer.ddconfig import DDConfig
from taming.tokenizer.decoder import Decoder
from taming.tokenizer.encoder import Encoder
from helpers import seg_transformer_config, vqgan_config, write_config


def test_ddconfig_schema_holds_exactly_the_encoder_and_decoder_parameters():
    named = set()
    for cls in (Encoder, Decoder):
        named |= {n for n, p in inspect.signature(cls).parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert set(DDConfig.__annotations__) == named


@pytest.mark.parametrize("override,needle", [
    ("model.params.ddconfig.ch=abc", "model.params.ddconfig.ch: expected int, got str 'abc'"),
    ("model.params.ddconfig.ch_mult=3", "model.params.ddconfig.ch_mult: expected a list of int, got int 3"),
    ("model.params.ddconfig.ch_mult=[1,x]", "model.params.ddconfig.ch_mult[1]: expected int, got str 'x'"),
    ("model.params.ddconfig.resolution=63", "model.params.ddconfig.resolution: 63 is not divisible by 2"),
    ("model.params.ddconfig.chh=32", "model.params.ddconfig: unknown key 'chh'; did you mean 'ch'?"),
    ("model.params.ddconfig.dropout=lots", "model.params.ddconfig.dropout: expected float, got str 'lots'"),
    ("model.params.lossconfig.params.disc_start=soon", "model.params.lossconfig.params.disc_start: expected int"),
    ("model.params.lossconfig.params.disc_wieght=1", "unknown key 'disc_wieght'; did you mean 'disc_weight'?"),
    ("model.params.n_embed=1.5", "model.params.n_embed: expected int, got float 1.5"),
    ("data.params.batch_size=1.5", "data.params.batch_size: expected int, got float 1.5"),
    ("data.params.train.params.size=big", "data.params.train.params.size: expected int"),
    # issue 20: these were tracebacks (ZeroDivisionError, RuntimeError, ValueError in a format string)
    ("model.params.n_embed=0", "model.params.n_embed: must be between 1 and 4194304, got 0"),
    ("model.params.embed_dim=-1", "model.params.embed_dim: must be between 1 and 8192, got -1"),
    ("model.base_learning_rate=abc", "model.base_learning_rate: expected float, got str 'abc'"),
    ("model.base_learning_rate=-1e-4", "model.base_learning_rate: must be a finite number >= 0, got -0.0001"),
    ("model.params.ddconfig.ch=8", "model.params.ddconfig.ch: 8 is not a multiple of 32"),
    ("model.params.ddconfig.dropout=.nan", "model.params.ddconfig.dropout: must be a finite number, got nan"),
    ("model.params.lossconfig.params.disc_ndf=0", "model.params.lossconfig.params.disc_ndf: must be between 1"),
    ("model.params.lossconfig.params.disc_loss=square", "disc_loss: expected one of 'hinge', 'vanilla'"),
])
def test_bad_values_give_one_line_naming_the_key_path(tmp_path, capsys, override, needle):
    cfg = write_config(tmp_path / "tiny.yaml", vqgan_config())
    assert main(["train", "-b", str(cfg), "-t", "-l", str(tmp_path / "logs"), override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("taming train: error: ") and needle in err[0], err
    assert not (tmp_path / "logs").exists()


def test_transformer_config_and_nested_first_stage_are_checked():
    cfg = seg_transformer_config(None, None)["model"]
    cfg["params"]["transformer_config"]["params"]["n_layr"] = 2
    with pytest.raises(ConfigError, match=r"model.params.transformer_config.params: unknown key 'n_layr'; "
                                          r"did you mean 'n_layer'\?"):
        instantiate_from_config(cfg, where="model")
    cfg = seg_transformer_config(None, None)["model"]
    cfg["params"]["first_stage_config"]["params"]["ddconfig"]["ch_mult"] = 3
    with pytest.raises(ConfigError, match=r"model.params.first_stage_config.params.ddconfig.ch_mult: expected a list"):
        instantiate_from_config(cfg, where="model")


def test_good_values_of_every_kind_pass():
    from functools import partial
    from typing import Literal, Sequence

    from taming.config_types import check_value as check

    check_value = partial(check, error=ConfigError)

    check_value(3, float, "x")
    check_value(None, int | None, "x")
    check_value([1, 2], Sequence[int], "x")
    check_value((1, 2), tuple[int, int], "x")
    check_value("a", Literal["a", "b"], "x")
    with pytest.raises(ConfigError, match="x: expected one of 'a', 'b', got str 'c'"):
        check_value("c", Literal["a", "b"], "x")
    with pytest.raises(ConfigError, match="x: expected int, got bool True"):
        check_value(True, int, "x")


def builds_nothing():
    """A callback target of the user's own package that returns None (issue 20: an AttributeError)."""
    return None


@pytest.mark.parametrize("section", ["callbacks", "model", "data"])
def test_a_target_that_builds_the_wrong_thing_is_one_line(tmp_path, capsys, section):
    cfg = vqgan_config()
    node = {"target": "test_config_validation.builds_nothing"}
    if section == "callbacks":
        cfg["lightning"]["callbacks"] = {"nothing": node}
    else:
        cfg[section] = {**node, **({"base_learning_rate": 1e-4} if section == "model" else {})}
    path = write_config(tmp_path / "c.yaml", cfg)
    assert main(["train", "-b", str(path), "-t", "--allow-import", "test_config_validation",
                 "-l", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    where = "lightning.callbacks.nothing" if section == "callbacks" else section
    assert len(err) == 1 and f"{where}.target built None, not a" in err[0], err


def test_a_model_target_of_the_wrong_kind_is_one_line(tmp_path, capsys):
    cfg = vqgan_config()
    cfg["model"]["target"] = "taming.tokenizer.inference.VQModel"  # the inference core: no training shell
    path = write_config(tmp_path / "c.yaml", cfg)
    assert main(["train", "-b", str(path), "-t", "-l", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["taming train: error: model.target built a VQModel, not a LightningModule (a training shell such "
                   "as taming.models.vqgan.VQModel)"], err
