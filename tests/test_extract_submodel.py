"""`taming extract-submodel`: each submodel of a transformer checkpoint, loaded by its own config."""
import torch

from helpers import make_run, seg_transformer_config
from taming.checkpoint import load_weights, read_state_dict
from taming.cli.main import main as taming
from taming.config import instantiate_from_config


def test_each_submodel_loads_through_its_config(tmp_path, capsys):
    config = seg_transformer_config(None, None)
    run = make_run(tmp_path, config, "transformer")
    full = read_state_dict(run / "checkpoints" / "last.ckpt")
    params = config["model"]["params"]
    for name, node in (("first_stage_model", "first_stage_config"), ("cond_stage_model", "cond_stage_config")):
        out = tmp_path / f"{name}.ckpt"
        assert taming(["extract-submodel", str(run / "checkpoints" / "last.ckpt"), str(out), "--submodel", name]) == 0
        stage = instantiate_from_config({**params[node], "params": {**params[node]["params"], "ckpt_path": str(out)}})
        for key, value in stage.state_dict().items():
            assert torch.equal(value, full[f"{name}.{key}"]), key
    out = tmp_path / "gpt.ckpt"
    assert taming(["extract-submodel", str(run / "checkpoints" / "last.ckpt"), str(out), "--submodel", "transformer"]) == 0
    gpt = instantiate_from_config(params["transformer_config"])
    load_weights(gpt, read_state_dict(out))  # strict: every key of the GPT, nothing else
    assert torch.equal(gpt.tok_emb.weight, full["transformer.tok_emb.weight"])
    # the original's positional third argument, and a checkpoint without the part: one line, exit 2
    assert taming(["extract-submodel", str(tmp_path / "first_stage_model.ckpt"), str(tmp_path / "x.ckpt"),
                   "transformer"]) == 2
    assert "holds no transformer.* weights; its parts: decoder, encoder" in capsys.readouterr().err
