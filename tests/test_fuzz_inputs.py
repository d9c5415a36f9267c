"""Property tests: random bytes to the checkpoint and image loaders, random YAML to the config loader,
zero / negative / NaN / huge / wrong-type values to every ddconfig and lossconfig field.

Every failure must be one of our clear errors (CheckpointError, DataError, ConfigError), never a raw
traceback type. Inputs are random and also mutations of valid files (cut short, bytes flipped),
which reach deeper into the parsers than noise does.
"""
from __future__ import annotations

import copy
import inspect
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from taming.checkpoint import CheckpointError, checkpoint_problem, read_checkpoint, read_state_dict
from taming.config import ConfigError, get_obj_from_str, instantiate_from_config, load_config, to_plain, validate_params
from taming.data.errors import DataError
from taming.data.imageio import read_depth, read_labels, read_rgb
from taming.losses.vqperceptual import VQLPIPSWithDiscriminator
from taming.tokenizer.ddconfig import DDConfig
from helpers import vqgan_config

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid_checkpoint() -> bytes:
    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "global_step": 3}, buf)
    return buf.getvalue()


def _valid_images() -> list[bytes]:
    rgb = (np.arange(8 * 8 * 3) % 251).astype(np.uint8).reshape(8, 8, 3)
    out = []
    for fmt in ("PNG", "JPEG", "BMP"):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


CKPT, IMAGES = _valid_checkpoint(), _valid_images()


@st.composite
def mutated(draw, originals: list[bytes]) -> bytes:
    """A valid file cut short, with a few bytes overwritten, or plain random bytes."""
    kind = draw(st.sampled_from(["random", "cut", "flip"]))
    if kind == "random":
        return draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(originals)))
    if kind == "cut":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def _write(data: bytes, suffix: str) -> Path:
    f = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
    f.write(data)
    f.close()
    return Path(f.name)


@FAST
@given(mutated([CKPT]))
def test_checkpoint_loader_fails_only_with_checkpoint_error(data):
    path = _write(data, ".ckpt")
    try:
        problem = checkpoint_problem(path)  # never raises
        assert problem is None or isinstance(problem, str)
        try:
            sd = read_state_dict(path)
            assert all(torch.is_tensor(v) for v in sd.values())
        except CheckpointError:
            pass
        if problem is None:
            read_checkpoint(path)  # what the check passes, the loader reads
    finally:
        path.unlink()


def test_multi_disk_zip_end_record_is_reported_not_raised(tmp_path):
    """A zip64 locator claiming two disks (hypothesis found it): zipfile.is_zipfile raises BadZipFile."""
    import struct

    locator = b"PK\x06\x07" + struct.pack("<LQL", 1, 0, 2)  # disk 1 of 2
    path = tmp_path / "multi.ckpt"
    path.write_bytes(b"x" * 8 + locator + b"PK\x05\x06" + bytes(18))  # + an empty end-of-archive record
    assert checkpoint_problem(path).startswith("damaged (BadZipFile")
    with pytest.raises(CheckpointError, match="multi.ckpt"):
        read_state_dict(path)


@FAST
@given(mutated(IMAGES), st.sampled_from([read_rgb, read_labels, read_depth]))
def test_image_loaders_fail_only_with_data_error(data, reader):
    try:
        array = reader(data, name="fuzz.png")
        assert isinstance(array, np.ndarray) and array.size > 0
    except DataError as exc:
        assert "fuzz.png" in str(exc)


CONFIG = yaml.safe_dump({"model": {"target": "taming.models.vqgan.VQModel", "params": {
    "embed_dim": 4, "n_embed": 8, "ddconfig": {"ch": 8, "ch_mult": [1, 2], "resolution": 16, "z_channels": 4},
    "lossconfig": {"target": "taming.modules.losses.vqperceptual.DummyLoss"}}},
    "data": {"target": "main.DataModuleFromConfig", "params": {"batch_size": 2}}})


def _walk(node, where: str) -> None:
    """Check every target node as instantiation would, without building (random sizes could be huge)."""
    if isinstance(node, dict):
        if "target" in node:
            obj = get_obj_from_str(node["target"], f"{where}.target")
            params = node.get("params") or {}
            if not isinstance(params, dict):
                raise ConfigError(f"{where}.params: not a mapping")
            validate_params(obj, params, f"{where}.params")
        for key, value in node.items():
            _walk(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _walk(value, f"{where}[{i}]")


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**40), st.floats(allow_nan=True),
                         st.text(max_size=12), st.sampled_from(["os.system", "taming.models.vqgan.VQModel",
                                                                 "${oc.env:NOPE}", "${missing.key}", "!!python/name:os.system"]))


@FAST
@given(st.one_of(
    st.text(max_size=300),  # any text
    mutated([CONFIG.encode()]).map(lambda b: b.decode("utf-8", "replace")),  # a config with damage
    st.builds(lambda key, value: CONFIG.replace("ch: 8", f"{key}: {yaml.safe_dump(value).splitlines()[0]}"),
              st.sampled_from(["ch", "ch_mult", "resolution", "chh", "target"]), yaml_scalars)),
    st.lists(st.sampled_from(["model.params.ddconfig.ch=abc", "data.params.batch_size=1.5", "model=3", "x.y=[1",
                              "model.target=os.system"]), max_size=2))
def test_config_loader_fails_only_with_config_error(text, overrides):
    path = _write(text.encode("utf-8", "replace"), ".yaml")
    try:
        _walk(to_plain(load_config(path, overrides=overrides)), "config")
    except ConfigError:
        pass
    finally:
        path.unlink()


def test_unresolvable_interpolations_are_config_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("TAMING_UNSET_VARIABLE", raising=False)
    for value, needle in (("${missing.key}", "missing"), ("${oc.env:TAMING_UNSET_VARIABLE}", "TAMING_UNSET_VARIABLE")):
        path = tmp_path / "c.yaml"
        path.write_text(CONFIG.replace("ch: 8", f"ch: '{value}'"))
        try:
            to_plain(load_config(path))
        except ConfigError as exc:
            assert needle in str(exc) and "model.params.ddconfig.ch" in str(exc), str(exc)
        else:
            raise AssertionError("no error")


# ---- config values: every ddconfig and lossconfig field -------------------------------------------------
BAD_VALUES = (0, -1, -2.5, float("nan"), float("inf"), float("-inf"), 2**40, 1e30, "abc", [1], {"a": 1}, None, True)
DD_FIELDS = tuple(sorted(DDConfig.__annotations__))
LOSS_FIELDS = tuple(n for n in inspect.signature(VQLPIPSWithDiscriminator).parameters)


def _model(**changes) -> dict:
    """The tiny VQGAN of tests/helpers.py with `changes` ({"ddconfig.ch": 0, ...}) written into its params."""
    model = copy.deepcopy(vqgan_config()["model"])
    if not any(k.startswith("lossconfig") for k in changes):
        model["params"]["lossconfig"] = {"target": "taming.modules.losses.DummyLoss"}  # no LPIPS: fast
    for path, value in changes.items():
        node = model["params"]
        *head, last = path.split(".")
        for key in head:
            node = node[key]
        node[last] = value
    return model


def _builds_or_names_the_key(changes: dict) -> None:
    """Building succeeds (a legal value, e.g. dropout 0) or fails with one ConfigError line naming a key."""
    try:
        instantiate_from_config(_model(**changes), where="model")
    except ConfigError as exc:
        text = str(exc)
        assert "\n" not in text and any(f"model.params.{k.split('.')[0]}" in text and k.split(".")[-1] in text
                                        for k in changes), (changes, text)


@pytest.mark.parametrize("field", [f"ddconfig.{f}" for f in DD_FIELDS] + [f"lossconfig.params.{f}" for f in LOSS_FIELDS])
def test_every_ddconfig_and_lossconfig_field_with_bad_values(field):
    """Issue 20: zero, negative, NaN, huge and wrong-type values give one line naming the key, never a traceback."""
    for value in BAD_VALUES:
        _builds_or_names_the_key({field: value})


@FAST
@given(st.dictionaries(st.sampled_from([f"ddconfig.{f}" for f in DD_FIELDS] + ["n_embed", "embed_dim"]),
                       st.sampled_from(BAD_VALUES), min_size=1, max_size=3))
def test_several_bad_config_values_at_once(changes):
    _builds_or_names_the_key(changes)
