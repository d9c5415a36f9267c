"""The checkpoint module: weights_only loading of original-style files, strict key checks, formats."""
import argparse
import collections

import pytest
import torch
from torch import nn

from taming.checkpoint import (CheckpointError, init_from_ckpt, load_weights, read_checkpoint, read_state_dict,
                               save_safetensors, save_state_dict)


class Tiny(nn.Module):
    def __init__(self, with_loss=False):
        super().__init__()
        self.encoder = nn.Linear(3, 4)
        self.decoder = nn.Linear(4, 3)
        if with_loss:
            self.loss = nn.Linear(2, 2)


class ModelCheckpoint:  # stands for a Lightning callback class pickled as a dict key in old .ckpt files
    pass


def test_original_lightning_ckpt_with_metadata_loads_weights_only(tmp_path):
    src = Tiny()
    path = tmp_path / "last.ckpt"
    torch.save({
        "epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.0.8",
        "state_dict": src.state_dict(),
        "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.5), "dirpath": "/x"}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]}],
        "lr_schedulers": [],
        "hparams_name": "kwargs", "hyper_parameters": {"args": argparse.Namespace(base=["a.yaml"])},
        "extra": collections.OrderedDict(a=1),
    }, path)
    ckpt = read_checkpoint(path)
    assert ckpt["global_step"] == 1200 and ckpt["epoch"] == 3
    dst = Tiny()
    report = init_from_ckpt(dst, path)
    assert len(report.loaded) == 4
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)


def test_mismatch_lists_missing_unexpected_and_wrong_shape():
    sd = Tiny().state_dict()
    sd.pop("decoder.bias")
    sd["encoder.weight"] = torch.zeros(5, 3)
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_weights(Tiny(), sd, source="file.ckpt")
    msg = str(err.value)
    assert "file.ckpt" in msg and "missing 1: decoder.bias" in msg and "unexpected 1: extra.weight" in msg
    assert "wrong shape 1: encoder.weight (file (5, 3), model (4, 3))" in msg


def test_loss_keys_dropped_explicitly_and_ignore_keys(caplog):
    src = Tiny(with_loss=True)
    dst = Tiny()
    with caplog.at_level("INFO"):
        report = load_weights(dst, src.state_dict(), source="vq.ckpt")
    assert report.dropped_loss == ["loss.weight", "loss.bias"]
    assert "dropped 2 training-loss weights" in caplog.text
    # A model that holds a loss but gets no loss weights keeps its own and says so.
    with caplog.at_level("WARNING"):
        report = load_weights(Tiny(with_loss=True), Tiny().state_dict())
    assert sorted(report.missing_loss) == ["loss.bias", "loss.weight"]
    # ignore_keys drops by prefix (the original argument) and then those keys may be missing.
    sd = Tiny().state_dict()
    report = load_weights(Tiny(), {k: v for k, v in sd.items()}, ignore_keys=["decoder"])
    assert report.ignored == ["decoder.weight", "decoder.bias"]


def test_safetensors_and_state_dict_round_trip(tmp_path):
    src = Tiny()
    st = save_safetensors(tmp_path / "m.safetensors", src, metadata={"config": {"a": 1}})
    pt = save_state_dict(tmp_path / "m.ckpt", src, global_step=7)
    for path in (st, pt):
        sd = read_state_dict(path)
        assert all(torch.equal(sd[k], v) for k, v in src.state_dict().items())
    assert read_checkpoint(st)["metadata"]["config"] == '{"a": 1}'
    assert read_checkpoint(pt)["global_step"] == 7


def test_bad_files_give_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*missing.ckpt"):
        read_checkpoint(tmp_path / "missing.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*junk.ckpt"):
        read_checkpoint(junk)
    junk_st = tmp_path / "junk.safetensors"
    junk_st.write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="cannot read safetensors file"):
        read_checkpoint(junk_st)
    listy = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listy)
    with pytest.raises(CheckpointError, match="holds a list"):
        read_checkpoint(listy)
    notensor = tmp_path / "meta.pt"
    torch.save({"state_dict": {"a": 1}}, notensor)
    with pytest.raises(CheckpointError, match="not tensors: a"):
        read_state_dict(notensor)
