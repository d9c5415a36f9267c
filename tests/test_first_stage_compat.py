"""The original API end to end: fixture configs + checkpoints through taming.models.vqgan, and the
small config targets of the released configs (schedulers, CoordStage, DummyCondStage)."""
from __future__ import annotations

import math

import pytest
import torch

from taming.config import instantiate_from_config, load_config
from helpers import FIXTURES


def close(a, b, rtol=1e-5):
    a, b = torch.as_tensor(a).detach().float(), torch.as_tensor(b).float()
    return a.shape == b.shape and bool((a - b).abs().max() <= rtol * b.abs().max().clamp_min(1e-12))


def build(name):
    cfg = load_config(FIXTURES / name / "config.yaml")
    cfg.model.params.ckpt_path = str(FIXTURES / name / "model.ckpt")
    return instantiate_from_config(cfg.model).eval(), torch.load(FIXTURES / name / "expected.pt", weights_only=True)


@pytest.mark.slow
@torch.no_grad()
def test_gumbel_fixture_through_original_api():
    from taming.models.vqgan import GumbelVQ
    from taming.modules.losses.vqperceptual import DummyLoss

    model, e = build("gumbel")
    assert isinstance(model, GumbelVQ) and isinstance(model.loss, DummyLoss) and model.loss.n_classes == 128
    logits = model.quantize.proj(model.encode_to_prequant(e["x"]))
    assert close(logits, e["logits"])
    _, _, info = model.encode(e["x"])
    assert torch.equal(info[2], e["indices"]) and info[2].shape == e["indices"].shape  # (B, h, w)
    assert close(model.decode_code(e["indices"]), e["dec_code"])


@torch.no_grad()
def test_segvq_fixture_through_original_api():
    from taming.models.vqgan import VQSegmentationModel

    model, e = build("segvq")
    assert isinstance(model, VQSegmentationModel) and model.colorize.shape == (3, 5, 1, 1)
    seg = e["segmentation"]
    quant, _, info = model.encode(seg)
    assert close(quant, e["quant"])
    assert torch.equal(info[2].reshape(e["indices"].shape), e["indices"])
    assert close(model(seg)[0], e["rec"])


def test_warmup_cosine_scheduler_known_values():
    from taming.lr_scheduler import LambdaWarmUpCosineScheduler

    s = LambdaWarmUpCosineScheduler(warm_up_steps=10, lr_min=0.1, lr_max=1.0, lr_start=0.0, max_decay_steps=110)
    assert s(0) == 0.0 and s(5) == pytest.approx(0.5) and s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.55) and s(110) == pytest.approx(0.1) and s(10_000) == pytest.approx(0.1)
    assert s.last_lr == pytest.approx(0.1)
    # The gumbel fixture's temperature schedule: 0.9 decaying to 1e-6 over 1,000,001 steps.
    g = LambdaWarmUpCosineScheduler(0, 1e-6, 0.9, 0.9, 1000001)
    assert g(0) == pytest.approx(0.9) and g(500000) == pytest.approx(1e-6 + 0.5 * (0.9 - 1e-6) * (1 + math.cos(math.pi * 500000 / 1000001)))


def test_linear_scheduler_cycles():
    from taming.lr_scheduler import LambdaLinearScheduler

    s = LambdaLinearScheduler(warm_up_steps=[10, 0], f_min=[0.0, 0.5], f_max=[1.0, 1.0], f_start=[0.0, 1.0],
                              cycle_lengths=[100, 50])
    assert s(5) == pytest.approx(0.5) and s(10) == pytest.approx(0.9) and s(100) == pytest.approx(0.0)
    assert s(125) == pytest.approx(0.75) and s(150) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="f_min"):
        LambdaLinearScheduler([1], [0.0, 0.0], [1.0], [0.0], [10])


def test_coord_stage_encode_decode():
    from taming.modules.misc.coord import CoordStage

    stage = CoordStage(n_embed=1024, down_factor=16)
    h = w = 32
    coord = (torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w)) / (h * w)
    quant, loss, (_, _, ind) = stage.encode(coord)
    assert loss is None and quant.shape == (1, 1, 2, 2) and ind.dtype == torch.long
    # area average of each 16x16 block, times 1024, rounded
    block = coord.reshape(1, 1, 2, 16, 2, 16).mean(dim=(3, 5))
    assert torch.equal(ind, (block * 1024).round().long()) and torch.equal(quant, ind.float())
    dec = stage.decode(quant)
    assert dec.shape == (1, 1, 32, 32) and torch.equal(dec[..., :16, :16], (quant[..., :1, :1] / 1024).expand(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stage.encode(coord + 1)
    assert not list(stage.state_dict())


def test_dummy_cond_stage_passes_tokens():
    from taming.models.dummy_cond_stage import DummyCondStage

    stage = DummyCondStage(conditional_key="objects_bbox")
    c = torch.randint(0, 8192, (2, 92))
    quant, loss, info = stage.encode(c)
    assert quant is c and loss is None and info[2] is c and info[:2] == (None, None)
    assert stage.decode(c) is c and stage.eval() is stage and not list(stage.state_dict())


def test_config_targets_of_released_configs_import():
    from taming.config import get_obj_from_str

    for target in ("taming.lr_scheduler.LambdaWarmUpCosineScheduler", "taming.modules.misc.coord.CoordStage",
                   "taming.models.dummy_cond_stage.DummyCondStage", "taming.modules.losses.DummyLoss",
                   "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
                   "taming.modules.losses.segmentation.BCELossWithQuant", "taming.models.vqgan.VQModel",
                   "taming.models.vqgan.GumbelVQ", "taming.models.vqgan.EMAVQ",
                   "taming.models.vqgan.VQSegmentationModel", "taming.modules.losses.lpips.LPIPS",
                   "taming.modules.discriminator.model.NLayerDiscriminator"):
        assert callable(get_obj_from_str(target)), target
