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
