"""Net2NetTransformer: original configs and checkpoints, fixture parity, training objective, CFG."""
import copy
import json

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from helpers import COMPAT, FIXTURES
from taming.checkpoint import CheckpointError, read_state_dict, save_state_dict
from taming.config import ConfigError, instantiate_from_config, load_config
from taming.models.cond_transformer import Net2NetTransformer, disabled_train
from taming.modules.util import SOSProvider
from taming.training.transformer import corrupt_codes, drop_conditioning
from taming.transformer.cond_stages import Labelator

TRANSFORMER_CONFIGS = ["faceshq_transformer", "drin_transformer", "coco_scene_images_transformer",
                       "open_images_scene_images_transformer"]


def model_config(path):
    return OmegaConf.to_container(load_config(path).model, resolve=True)


def build_fixture(name, ckpt=True, **params):
    cfg = model_config(FIXTURES / name / "config.yaml")
    cfg["params"].update(params)
    extra = {"ckpt_path": str(FIXTURES / name / "model.ckpt")} if ckpt else {}
    return instantiate_from_config(cfg, **extra).eval()


def expected(name):
    return torch.load(FIXTURES / name / "expected.pt", weights_only=True)


@pytest.fixture(scope="module")
def seg():
    return build_fixture("transformer_seg"), expected("transformer_seg")


@pytest.fixture(scope="module")
def uncond():
    return build_fixture("transformer_uncond"), expected("transformer_uncond")


# ---- original configs: keys and shapes -----------------------------------------------------------
@pytest.mark.parametrize("name", TRANSFORMER_CONFIGS)
def test_original_config_keys_and_shapes(name):
    cfg = model_config(COMPAT / "configs" / f"{name}.yaml")
    for stage in ("first_stage_config", "cond_stage_config"):  # their weights come from the full checkpoint
        node = cfg["params"][stage]
        if isinstance(node, dict):
            node.get("params", {}).pop("ckpt_path", None)
    with torch.device("meta"):
        model = instantiate_from_config(cfg)
    assert type(model) is Net2NetTransformer
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    want = json.loads((COMPAT / "keys" / f"{name}.json").read_text())["keys"]
    assert sorted(set(got) - set(want)) == [] and sorted(set(want) - set(got)) == []
    assert got == want
    assert list(got) == list(want)  # the original's module order too


@pytest.mark.parametrize("name", TRANSFORMER_CONFIGS[:2])
def test_inference_core_of_original_configs_has_the_same_keys_but_the_loss(name):
    """load_model builds the plain cores a config's shells stand for: the original's keys, less `loss.*`."""
    from taming.checkpoint import LOSS_KEY, for_inference
    from taming.transformer.net2net import Net2Net

    cfg = model_config(COMPAT / "configs" / f"{name}.yaml")
    for stage in ("first_stage_config", "cond_stage_config"):  # no stage weights: the shapes are compared
        if isinstance(cfg["params"][stage], dict):
            cfg["params"][stage].get("params", {}).pop("ckpt_path", None)
    with torch.device("meta"):
        model = instantiate_from_config(for_inference(cfg))
    assert type(model) is Net2Net and not isinstance(model, L.LightningModule)
    want = json.loads((COMPAT / "keys" / f"{name}.json").read_text())["keys"]
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == \
        {k: v for k, v in want.items() if not LOSS_KEY.search(k)}


def test_inference_core_gives_the_fixture_codes_and_logits():
    from taming.checkpoint import load_model

    ckpt = FIXTURES / "transformer_seg" / "model.ckpt"
    model, _ = load_model(str(FIXTURES / "transformer_seg" / "config.yaml"), None,
                          [f"model.params.ckpt_path={ckpt}"])
    e = expected("transformer_seg")
    _, z = model.encode_to_z(e["x"])
    _, c = model.encode_to_c(e["segmentation"])
    assert torch.equal(z, e["z_indices"]) and torch.equal(c, e["c_indices"])
    with torch.no_grad():
        logits, _ = model(e["x"], e["segmentation"])
    torch.testing.assert_close(logits, e["logits"], rtol=1e-5, atol=1e-5)


# ---- fixtures: parity with the original ----------------------------------------------------------
@pytest.mark.slow
def test_seg_fixture_codes_logits_target(seg):
    model, e = seg
    _, z = model.encode_to_z(e["x"])
    _, c = model.encode_to_c(e["segmentation"])
    assert torch.equal(z, e["z_indices"]) and torch.equal(c, e["c_indices"])
    with torch.no_grad():
        logits, target = model(e["x"], e["segmentation"])
    assert torch.equal(target, e["target"])
    torch.testing.assert_close(logits, e["logits"], rtol=1e-5, atol=1e-5)


def test_seg_fixture_greedy_sample(seg):
    model, e = seg
    calls = []
    out = model.sample(e["z_indices"][:, :0], e["c_indices"], steps=64, sample=False, callback=calls.append)
    assert torch.equal(out, e["greedy"])
    assert calls == list(range(64))
    # continuing from given codes returns them followed by the new ones (the original's contract)
    half = model.sample(e["greedy"][:, :20], e["c_indices"], steps=44, sample=False)
    assert torch.equal(half, e["greedy"])


@pytest.mark.slow
def test_uncond_fixture(uncond):
    model, e = uncond
    assert model.be_unconditional and model.cond_stage_key == "image"
    assert isinstance(model.cond_stage_model, SOSProvider)
    quant_z, _ = model.encode_to_z(e["x"])
    _, sos = model.encode_to_c(e["x"])
    assert torch.equal(sos, e["sos"])
    with torch.no_grad():
        logits, target = model(e["x"], e["x"])
    assert torch.equal(target, e["target"])
    torch.testing.assert_close(logits, e["logits"], rtol=1e-5, atol=1e-5)
    greedy = model.sample(sos[:, :0], sos, steps=64)
    assert torch.equal(greedy, e["greedy"])
    img = model.decode_to_img(greedy, quant_z.shape)
    torch.testing.assert_close(img, e["greedy_img"], rtol=1e-4, atol=1e-5)


def test_strict_loading(tmp_path):
    sd = read_state_dict(FIXTURES / "transformer_uncond" / "model.ckpt")
    missing = dict(sd)
    missing.pop("transformer.ln_f.bias")
    save_state_dict(tmp_path / "missing.ckpt", missing)
    with pytest.raises(CheckpointError, match="transformer.ln_f.bias"):
        build_fixture("transformer_uncond", ckpt=False, ckpt_path=str(tmp_path / "missing.ckpt"))
    extra = dict(sd, **{"transformer.extra": torch.zeros(1)})
    save_state_dict(tmp_path / "extra.ckpt", extra)
    with pytest.raises(CheckpointError, match="transformer.extra"):
        build_fixture("transformer_uncond", ckpt=False, ckpt_path=str(tmp_path / "extra.ckpt"))
    # ignore_keys drops keys on purpose: the GPT head keeps its fresh init
    model = build_fixture("transformer_uncond", ckpt=False, ckpt_path=str(FIXTURES / "transformer_uncond" / "model.ckpt"),
                          ignore_keys=["transformer.head"])
    assert not torch.equal(model.transformer.head.weight, sd["transformer.head.weight"])
    assert torch.equal(model.transformer.ln_f.weight, sd["transformer.ln_f.weight"])


@pytest.mark.slow
def test_stage_ckpt_paths_not_needed_with_full_checkpoint(tmp_path):
    # Original configs name the stages' own checkpoints on the authors' disks; the full checkpoint
    # holds those weights, so the paths are not read.
    cfg = model_config(FIXTURES / "transformer_seg" / "config.yaml")
    for stage in ("first_stage_config", "cond_stage_config"):
        cfg["params"][stage]["params"]["ckpt_path"] = str(tmp_path / "logs" / stage / "last.ckpt")
    model = instantiate_from_config(cfg, ckpt_path=str(FIXTURES / "transformer_seg" / "model.ckpt")).eval()
    e = expected("transformer_seg")
    assert torch.equal(model.encode_to_z(e["x"])[1], e["z_indices"])
    assert torch.equal(model.encode_to_c(e["segmentation"])[1], e["c_indices"])


# ---- training --------------------------------------------------------------------------------------
def channels_last_batch(e):
    return {"image": e["x"].permute(0, 2, 3, 1), "segmentation": e["segmentation"].permute(0, 2, 3, 1)}


@pytest.mark.slow
def test_training_step_keeps_stages_frozen():
    model = build_fixture("transformer_seg").train()  # Lightning 2 keeps the mode it is given
    model.learning_rate = 1e-3
    e = expected("transformer_seg")
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("transformer.")}
    gpt_before = model.transformer.head.weight.detach().clone()
    loader = torch.utils.data.DataLoader([channels_last_batch(e)], batch_size=None)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, loader)
    assert "train/loss_step" in trainer.callback_metrics
    assert not model.first_stage_model.training and not model.cond_stage_model.training
    assert model.transformer.training
    for k, v in model.state_dict().items():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k
    for p in list(model.first_stage_model.parameters()) + list(model.cond_stage_model.parameters()):
        assert p.grad is None and not p.requires_grad
    assert not torch.equal(model.transformer.head.weight, gpt_before)


def test_optimizer_decays_linear_weights_only(seg):
    model = copy.deepcopy(seg[0])
    model.learning_rate = 4.5e-6
    opt = model.configure_optimizers()
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["lr"] == 4.5e-6
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    linear_weights = {id(m.weight) for m in model.transformer.modules() if isinstance(m, torch.nn.Linear)}
    assert decay == linear_weights
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in model.transformer.parameters()}


def test_learning_rate_must_be_set(seg):
    model = copy.deepcopy(seg[0])
    with pytest.raises(ConfigError, match="learning_rate"):
        model.configure_optimizers()


def test_pkeep_corruption_fraction():
    g = torch.Generator().manual_seed(0)
    z = torch.randint(0, 64, (64, 256), generator=g)
    out = corrupt_codes(z, 0.7, 64, generator=g)
    changed = (out != z).float().mean().item()
    assert abs(changed - 0.3 * (1 - 1 / 64)) < 0.01
    assert out.min() >= 0 and out.max() < 64
    assert torch.equal(corrupt_codes(z, 1.0, 64, generator=g), z)


def test_pkeep_only_in_training(seg):
    model, e = seg
    model = copy.deepcopy(model)
    model.pkeep = 0.5
    z, c = e["z_indices"], e["c_indices"]
    with torch.no_grad():
        logits_eval, _ = model.forward_codes(z, c)
        model.transformer.train()  # dropout is 0 in this config: only the corruption differs
        model.train()
        logits_train, target = model.forward_codes(z, c)
    torch.testing.assert_close(logits_eval, e["logits"], rtol=1e-5, atol=1e-5)
    assert torch.equal(target, z)
    assert not torch.allclose(logits_train, logits_eval)


def test_pretokenized_batch_gives_same_loss(seg):
    model, e = seg
    with torch.no_grad():
        from_images = model.shared_step(channels_last_batch(e), 0)
        tokens = {"z_indices": e["z_indices"].view(2, 8, 8), "c_indices": e["c_indices"].view(2, 8, 8)}
        from_codes = model.shared_step(tokens, 0)
    torch.testing.assert_close(from_codes, from_images)


def test_permuter_round_trip(seg):
    model, e = seg
    zcurve = build_fixture("transformer_seg", ignore_keys=["permuter."], permuter_config={
        "target": "taming.modules.transformer.permuter.ZCurve", "params": {"H": 8, "W": 8}})
    quant_z, z = zcurve.encode_to_z(e["x"])
    assert torch.equal(z, e["z_indices"][:, zcurve.permuter.forward_shuffle_idx])
    torch.testing.assert_close(zcurve.decode_to_img(z, quant_z.shape), model.decode_to_img(e["z_indices"], quant_z.shape))


# ---- classifier-free guidance --------------------------------------------------------------------
def test_drop_conditioning_fraction():
    g = torch.Generator().manual_seed(0)
    c = torch.randint(0, 10, (4000, 3), generator=g)
    out = drop_conditioning(c, 0.25, 63, generator=g)
    dropped = (out == 63).all(dim=1)
    assert torch.equal(out[~dropped], c[~dropped])  # whole rows dropped or kept
    assert abs(dropped.float().mean().item() - 0.25) < 0.03


@pytest.mark.slow
def test_cfg_training_and_sampling():
    model = build_fixture("transformer_seg", cfg_dropout=0.5, cfg_null_token=63)
    e = expected("transformer_seg")
    model.train()
    torch.manual_seed(1)
    loss = model.shared_step(channels_last_batch(e), 0)
    loss.backward()
    assert torch.isfinite(loss) and model.transformer.head.weight.grad is not None
    model.eval()
    c = e["c_indices"]
    empty = c[:, :0]
    plain = model.sample(empty, c, steps=64)
    assert torch.equal(plain, e["greedy"])
    assert torch.equal(model.sample(empty, c, steps=64, cfg_scale=1.0), e["greedy"])
    null_only = model.sample(empty, torch.full_like(c, 63), steps=64)
    assert torch.equal(model.sample(empty, c, steps=64, cfg_scale=0.0), null_only)
    g = torch.Generator().manual_seed(0)
    guided = model.sample(empty, c, steps=64, cfg_scale=3.0, sample=True, top_k=10, generator=g)
    assert guided.shape == (2, 64) and guided.min() >= 0 and guided.max() < 64


@pytest.mark.parametrize("params,match", [
    ({"cfg_dropout": 0.1}, "cfg_null_token"),
    ({"cfg_dropout": 0.1, "cfg_null_token": 64}, "cfg_null_token"),
    ({"cfg_dropout": 1.5, "cfg_null_token": 3}, "cfg_dropout"),
    ({"pkeep": -0.1}, "pkeep"),
])
def test_bad_options_raise(params, match):
    with pytest.raises(ConfigError, match=match):
        build_fixture("transformer_seg", ckpt=False, **params)


def test_cfg_needs_conditioning():
    with pytest.raises(ConfigError, match="unconditional"):
        build_fixture("transformer_uncond", ckpt=False, cfg_dropout=0.1, cfg_null_token=1)


# ---- cond stages ---------------------------------------------------------------------------------
def test_class_label_cond_stage():
    model = build_fixture("transformer_seg", ckpt=False, cond_stage_key="class_label", cond_stage_config={
        "target": "taming.transformer.cond_stages.Labelator", "params": {"n_classes": 10}})
    assert isinstance(model.cond_stage_model, Labelator)
    batch = {"image": torch.rand(2, 64, 64, 3) * 2 - 1, "class_label": torch.tensor([3, 7])}
    x, c = model.get_xc(batch)
    assert torch.equal(model.encode_to_c(c)[1], torch.tensor([[3], [7]]))
    logits, target = model(x, c)
    assert logits.shape == (2, 64, 64) and target.shape == (2, 64)
    # pre-tokenized class-conditional batches (taming/data/codes.py) hold codes and the label
    z, c_codes = model.get_codes({"z_indices": target.view(2, 8, 8), "class_label": torch.tensor([3, 7])})
    assert torch.equal(z, target) and torch.equal(c_codes, torch.tensor([[3], [7]]))


def test_coord_cond_stage():
    model = build_fixture("transformer_seg", ckpt=False, cond_stage_key="coord", cond_stage_config={
        "target": "taming.modules.misc.coord.CoordStage", "params": {"n_embed": 64, "down_factor": 8}})
    coord = torch.linspace(0, 1, 64).view(1, 64, 1, 1).expand(2, 64, 64, 1)  # (B, H, W, 1), rows 0..1
    x, c = model.get_xc({"image": torch.rand(2, 64, 64, 3), "coord": coord})
    _, codes = model.encode_to_c(c)
    assert codes.shape == (2, 64) and codes.max() <= 64 and torch.equal(codes[0], codes[1])
    logits, _ = model(x, c)
    assert logits.shape == (2, 64, 64)


def test_first_stage_as_cond_stage():
    model = build_fixture("transformer_seg", ckpt=False, cond_stage_key="image",
                          cond_stage_config="__is_first_stage__")
    assert model.cond_stage_model is model.first_stage_model
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(model.encode_to_c(x)[1], model.encode_to_z(x)[1])


def test_frozen_stages_stay_in_eval(seg):
    model = copy.deepcopy(seg[0])
    model.train()
    assert model.transformer.training
    assert not model.first_stage_model.training and not model.cond_stage_model.training
    assert disabled_train(model) is model


@pytest.mark.slow
def test_log_images(seg):
    model, e = seg
    torch.manual_seed(0)
    logs = model.log_images(channels_last_batch(e), N=1)  # one image: the logging path, kept cheap
    assert set(logs) == {"inputs", "reconstructions", "conditioning", "conditioning_rec", "samples_half",
                         "samples_nopix", "samples_det"}
    for key in logs:
        assert logs[key].shape == (1, 3, 64, 64), key
    quant_z, _ = model.encode_to_z(e["x"][:1])
    torch.testing.assert_close(logs["samples_det"], model.decode_to_img(e["greedy"][:1], quant_z.shape))
    tokenized = model.log_images({"z_indices": e["z_indices"].view(2, 8, 8), "c_indices": e["c_indices"]}, N=1)
    assert set(tokenized) == {"inputs", "reconstructions", "samples_half", "samples_nopix", "samples_det"}
    torch.testing.assert_close(tokenized["samples_det"], logs["samples_det"])
    torch.testing.assert_close(tokenized["inputs"], logs["reconstructions"])


def test_downsample_cond_size(seg):
    model, e = seg
    model = copy.deepcopy(model)
    model.downsample_cond_size = 32  # the f8 cond stage then gives a 4x4 grid
    _, c = model.encode_to_c(e["segmentation"])
    assert c.shape == (2, 16)
    small = torch.nn.functional.interpolate(e["segmentation"], size=(32, 32))  # nearest, as the original
    assert torch.equal(c, model.cond_stage_model.encode(small)[2][2].reshape(2, -1))


def test_pkeep_zero_samples_in_one_pass(seg):
    model, e = seg
    model = copy.deepcopy(model)
    model.pkeep = 0.0  # the original's one-pass mode: every code from the conditioning alone
    out = model.sample(e["c_indices"][:, :0], e["c_indices"], steps=64)
    assert out.shape == (2, 64)
    assert torch.equal(out[:, 0], e["greedy"][:, 0])  # the first code sees only c in both modes


def test_freeze_survives_pickle_and_train():
    import pickle

    from taming.transformer.cond_stages import freeze

    outer = torch.nn.Sequential(freeze(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout())),
                                torch.nn.Linear(2, 2))
    for model in (outer, pickle.loads(pickle.dumps(outer)), copy.deepcopy(outer)):
        model.train()
        assert not model[0].training and not model[0][1].training and model[1].training
        assert not any(p.requires_grad for p in model[0].parameters())
        assert model[0].train() is model[0]


@pytest.mark.parametrize("cond,match", [
    ("__is_unconditonal__", "neither"),
    ({"target": "torch.nn.Identity"}, "no encode"),
])
def test_bad_cond_stage_config(cond, match):
    with pytest.raises(ConfigError, match=match):
        build_fixture("transformer_seg", ckpt=False, cond_stage_config=cond)
