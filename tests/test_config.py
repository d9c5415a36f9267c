"""Config loading and validated instantiation: typos and unknown keys are errors that name them."""
import pytest
import torch
from omegaconf import OmegaConf

from taming.config import ConfigError, get_obj_from_str, instantiate_from_config, load_config


def test_instantiate_builds_target_with_params():
    layer = instantiate_from_config({"target": "torch.nn.Linear", "params": {"in_features": 3, "out_features": 5}})
    assert isinstance(layer, torch.nn.Linear) and layer.weight.shape == (5, 3)


def test_unknown_param_is_named_with_suggestion():
    with pytest.raises(ConfigError, match=r"model\.params: unknown key 'in_featurs'; did you mean 'in_features'"):
        instantiate_from_config({"target": "torch.nn.Linear", "params": {"in_featurs": 3, "out_features": 5}},
                                where="model")


def test_unknown_node_key_is_named():
    with pytest.raises(ConfigError, match="unknown key 'parms'.*did you mean 'params'"):
        instantiate_from_config({"target": "torch.nn.Identity", "parms": {}})


def test_missing_target_and_bad_paths():
    with pytest.raises(ConfigError, match="missing 'target'"):
        instantiate_from_config({"params": {}})
    with pytest.raises(ConfigError, match="cannot import module 'taming.nonexistent'"):
        get_obj_from_str("taming.nonexistent.Thing")
    with pytest.raises(ConfigError, match="has no 'Linaer'; did you mean 'Linear'"):
        get_obj_from_str("torch.nn.Linaer")
    with pytest.raises(ConfigError, match="not a dotted import path"):
        get_obj_from_str("Linear")


def test_load_config_merges_files_and_overrides(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("model:\n  base_learning_rate: 1.0e-4\n  params: {x: 1, y: 2}\n")
    b.write_text("model:\n  params: {y: 3}\n")
    cfg = load_config(a, b, overrides=["model.params.x=7", "data.batch_size=4"])
    assert OmegaConf.to_container(cfg) == {"model": {"base_learning_rate": 1e-4, "params": {"x": 7, "y": 3}},
                                           "data": {"batch_size": 4}}


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse config .*bad.yaml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not of the form key.path=value"):
        load_config(overrides=["justakey"])


def test_original_data_module_targets_are_aliased():
    from taming.config import TARGET_ALIASES

    assert TARGET_ALIASES["main.DataModuleFromConfig"] == TARGET_ALIASES["cutlit.DataModuleFromConfig"]
