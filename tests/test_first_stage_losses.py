"""First-stage losses: fixture numbers, LPIPS weight files, discriminator layouts, checkpoint loading."""
from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from taming.checkpoint import CheckpointError
from taming.losses.lpips_files import LIN_ENV, VGG16_ENV, WeightsNotFound
from helpers import FIXTURES

VQGAN = FIXTURES / "vqgan"
VGG_CONV_IDX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)


def close(a, b, rtol=1e-5):
    """Max error relative to the reference's scale (float32 sums in another order differ in the last bits)."""
    a, b = torch.as_tensor(a, dtype=torch.float32).detach(), torch.as_tensor(b, dtype=torch.float32)
    return a.shape == b.shape and bool((a - b).abs().max() <= rtol * b.abs().max().clamp_min(1e-12))


@pytest.fixture(scope="module")
def expected():
    return torch.load(VQGAN / "expected.pt", weights_only=True)


@pytest.fixture(scope="module")
def fixture_model():
    from taming.config import instantiate_from_config

    cfg = OmegaConf.load(VQGAN / "config.yaml")
    cfg.model.params.ckpt_path = str(VQGAN / "model.ckpt")
    return instantiate_from_config(cfg.model).eval()


# -- the fixture through the original API ------------------------------------------------------------
@pytest.mark.slow
def test_vqgan_fixture_losses_match(fixture_model, expected):
    from taming.models.vqgan import VQModel

    model = fixture_model
    assert isinstance(model, VQModel)
    x = expected["x"]
    xrec, qloss = model(x)
    assert close(xrec, expected["xrec"]) and close(qloss, expected["qloss"])
    assert close(model.loss.perceptual_loss(x, xrec), expected["lpips"])
    last = model.get_last_layer()
    assert last is model.decoder.conv_out.weight
    aeloss, log_ae = model.loss(qloss, x, xrec, 0, 100, last_layer=last, split="train")
    discloss, log_disc = model.loss(qloss, x, xrec, 1, 100, last_layer=last, split="train")
    assert close(aeloss, expected["aeloss"]) and close(discloss, expected["discloss"])
    assert list(log_ae) == list(expected["log_ae"]) and list(log_disc) == list(expected["log_disc"])
    for got, want in ((log_ae, expected["log_ae"]), (log_disc, expected["log_disc"])):
        for k in want:
            assert close(got[k], want[k]), (k, got[k], want[k])


def test_lpips_standalone_matches_fixture(expected):
    from taming.checkpoint import read_state_dict
    from taming.modules.losses.lpips import LPIPS

    sd = read_state_dict(VQGAN / "model.ckpt")
    lp = LPIPS(pretrained=False)
    lp.load_state_dict({k[len("loss.perceptual_loss."):]: v for k, v in sd.items()
                        if k.startswith("loss.perceptual_loss.")})
    assert lp.weights_loaded
    lp.train()  # stays in eval: a metric, not a trainee
    assert not lp.training and not any(p.requires_grad for p in lp.parameters())
    assert close(lp(expected["x"], expected["xrec"]), expected["lpips"])


@pytest.mark.slow
def test_loss_under_bf16_autocast(fixture_model, expected):
    model = fixture_model
    x = expected["x"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        xrec, qloss = model(x)
        aeloss, log = model.loss(qloss, x, xrec, 0, 100, last_layer=model.get_last_layer())
        dloss, _ = model.loss(qloss, x, xrec, 1, 100)
    assert aeloss.dtype == torch.float32 and dloss.dtype == torch.float32
    assert log["train/d_weight"].dtype == torch.float32
    # bf16 has ~3 significant digits; the loss stays near the float32 value.
    assert abs(aeloss.item() - expected["aeloss"].item()) < 0.05 * expected["aeloss"].item()
    assert abs(dloss.item() - expected["discloss"].item()) < 0.05


@pytest.mark.slow
def test_validation_without_graph_gives_zero_d_weight(fixture_model, expected):
    model = fixture_model
    with torch.no_grad():
        xrec, qloss = model(expected["x"])
        loss, log = model.loss(qloss, expected["x"], xrec, 0, 100, last_layer=model.get_last_layer(), split="val")
    assert log["val/d_weight"].item() == 0.0
    assert close(loss, log["val/nll_loss"] + log["val/quant_loss"])


def test_generator_backward_from_the_reconstructions_equals_the_full_one(fixture_model, expected, monkeypatch):
    """With the discriminator frozen (the generator step) the loss's backward starts at the
    reconstructions with the gradient the adaptive weight computed there: the same loss, logs and
    autoencoder gradients as backpropagating through LPIPS and the discriminator again."""
    model, x = fixture_model, expected["x"]
    loss_fn, disc = model.loss, model.loss.discriminator
    ae = [p for n, p in model.named_parameters() if not n.startswith("loss.")]
    runs = []
    for shortcut in (True, False):
        if not shortcut:  # the plain path: gradients through LPIPS and the discriminator
            monkeypatch.setattr(type(loss_fn), "_frozen_beyond", lambda *a: False)
        disc.requires_grad_(False)
        xrec, qloss = model(x)
        aeloss, log = loss_fn(qloss, x, xrec, 0, 100, last_layer=model.get_last_layer())
        runs.append((aeloss.detach(), log, torch.autograd.grad(aeloss, ae)))
        disc.requires_grad_(True)
    (loss_a, log_a, grads_a), (loss_b, log_b, grads_b) = runs
    assert torch.equal(loss_a, loss_b) and close(loss_a, expected["aeloss"])
    assert all(torch.equal(log_a[k], log_b[k]) for k in log_b)
    # all at once: a bias right before a GroupNorm has only rounding noise for a gradient
    assert close(torch.cat([g.flatten() for g in grads_a]), torch.cat([g.flatten() for g in grads_b]), rtol=1e-5)
    # a discriminator that trains in the same backward keeps the plain path (its gradients exist)
    xrec, qloss = model(x)
    aeloss, _ = loss_fn(qloss, x, xrec, 0, 100, last_layer=model.get_last_layer())
    aeloss.backward()
    assert all(p.grad is not None for p in disc.parameters())
    model.zero_grad(set_to_none=True)


# -- small pieces ------------------------------------------------------------------------------------
def test_d_losses_and_adopt_weight_known_values():
    from taming.modules.losses.vqperceptual import adopt_weight, hinge_d_loss, vanilla_d_loss

    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (0.25 + 0.5))
    sp = lambda v: math.log1p(math.exp(v))
    assert vanilla_d_loss(real, fake).item() == pytest.approx(0.5 * ((sp(-2) + sp(-0.5)) / 2 + (sp(-2) + sp(0)) / 2))
    assert adopt_weight(1.0, 9, threshold=10) == 0.0 and adopt_weight(1.0, 10, threshold=10) == 1.0


def test_star_import_provides_original_names():
    ns: dict = {}
    exec("from taming.modules.losses.vqperceptual import *", ns)
    for name in ("LPIPS", "NLayerDiscriminator", "weights_init", "hinge_d_loss", "vanilla_d_loss",
                 "adopt_weight", "VQLPIPSWithDiscriminator", "DummyLoss"):
        assert name in ns, name
    from taming.modules.losses import DummyLoss, VQLPIPSWithDiscriminator  # noqa: F401
    from taming.modules.losses.segmentation import BCELossWithQuant  # noqa: F401
    from taming.modules.discriminator.model import ActNorm, NLayerDiscriminator, weights_init  # noqa: F401


def test_discriminator_layouts():
    from taming.modules.discriminator.model import NLayerDiscriminator, weights_init

    bn = NLayerDiscriminator(input_nc=1, ndf=8, n_layers=3).apply(weights_init)
    keys = {k: tuple(v.shape) for k, v in bn.state_dict().items()}
    assert keys["main.0.weight"] == (8, 1, 4, 4) and "main.2.bias" not in keys
    assert keys["main.11.weight"] == (1, 64, 4, 4) and keys["main.9.running_var"] == (64,)
    assert bn(torch.randn(2, 1, 64, 64)).shape == (2, 1, 6, 6)
    an = NLayerDiscriminator(input_nc=3, ndf=8, n_layers=2, use_actnorm=True)
    keys = set(an.state_dict())
    assert {"main.2.bias", "main.3.loc", "main.3.scale", "main.3.initialized", "main.8.weight"} <= keys


def test_actnorm_data_dependent_init_and_reverse():
    from taming.modules.discriminator.model import ActNorm

    norm = ActNorm(4, logdet=True)
    x = torch.randn(8, 4, 5, 5) * 3 + 2
    y, logdet = norm(x)
    assert norm.initialized.item() == 1
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-4)
    assert logdet.shape == (8,) and torch.allclose(logdet, 25 * torch.log(norm.scale.abs()).sum().expand(8))
    assert torch.allclose(norm.reverse(y), x, atol=1e-4)
    with pytest.raises(RuntimeError, match="allow_reverse_init"):
        ActNorm(4).reverse(x)


def test_bce_loss_with_quant_logs():
    from taming.modules.losses.segmentation import BCELossWithQuant

    target = torch.nn.functional.one_hot(torch.randint(0, 5, (2, 8, 8)), 5).permute(0, 3, 1, 2).float()
    pred, q = torch.randn(2, 5, 8, 8), torch.tensor(0.25)
    loss, log = BCELossWithQuant(codebook_weight=2.0)(q, target, pred, split="val")
    bce = torch.nn.functional.binary_cross_entropy_with_logits(pred, target)
    assert list(log) == ["val/total_loss", "val/bce_loss", "val/quant_loss"]
    assert close(loss, bce + 0.5) and close(log["val/bce_loss"], bce)


# -- LPIPS weight files ----------------------------------------------------------------------------------
def fake_vgg16_state_dict() -> dict:
    sd = {}
    c_in = 3
    for idx, c in zip(VGG_CONV_IDX, VGG_CHANNELS):
        sd[f"features.{idx}.weight"] = torch.randn(c, c_in, 3, 3)
        sd[f"features.{idx}.bias"] = torch.randn(c)
        c_in = c
    sd["classifier.0.weight"] = torch.randn(4, 4)  # ignored by LPIPS (real file: 4096 x 25088)
    return sd


def fake_lin_state_dict() -> dict:
    return {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}


@pytest.fixture
def no_weight_dirs(tmp_path, monkeypatch):
    """Point every default location at empty temp folders."""
    monkeypatch.delenv(VGG16_ENV, raising=False)
    monkeypatch.delenv(LIN_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    from taming.losses import lpips_files

    monkeypatch.setattr(lpips_files, "lin_search_dirs",
                        lambda: [tmp_path / "cache" / "taming" / "lpips", tmp_path / "pkg"])
    return tmp_path


def test_lpips_loads_files_bitwise(no_weight_dirs, monkeypatch):
    from taming.losses.lpips import LPIPS

    tmp = no_weight_dirs
    vgg, lin = fake_vgg16_state_dict(), fake_lin_state_dict()
    (tmp / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(vgg, tmp / "hub" / "checkpoints" / "vgg16-397923af.pth")
    torch.save(lin, tmp / "mylin.pth")
    monkeypatch.setenv(LIN_ENV, str(tmp / "mylin.pth"))
    lp = LPIPS()
    assert not lp.weights_loaded
    lp.load_pretrained()
    sd = lp.state_dict()
    for idx in VGG_CONV_IDX:
        k = next(i for i, (lo, hi) in enumerate(((0, 4), (4, 9), (9, 16), (16, 23), (23, 30)), 1) if lo <= idx < hi)
        assert torch.equal(sd[f"net.slice{k}.{idx}.weight"], vgg[f"features.{idx}.weight"])
        assert torch.equal(sd[f"net.slice{k}.{idx}.bias"], vgg[f"features.{idx}.bias"])
    for key, value in lin.items():
        assert torch.equal(sd[key], value)
    assert lp.weights_loaded


@pytest.mark.slow
def test_lpips_lazy_load_on_first_forward(no_weight_dirs, monkeypatch):
    from taming.losses.lpips import LPIPS

    tmp = no_weight_dirs
    torch.save(fake_vgg16_state_dict(), tmp / "vgg.bin")
    (tmp / "pkg").mkdir()
    torch.save(fake_lin_state_dict(), tmp / "pkg" / "vgg.pth")  # found in a default folder
    monkeypatch.setenv(VGG16_ENV, str(tmp / "vgg.bin"))
    lp = LPIPS()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    d = lp(x, -x)
    assert lp.weights_loaded and d.shape == (1, 1, 1, 1) and d.item() > 0
    assert lp(x, x).item() == 0.0


def test_missing_weight_files_give_one_clear_error(no_weight_dirs, monkeypatch):
    from taming.losses.lpips import LPIPS

    tmp = no_weight_dirs
    with pytest.raises(WeightsNotFound) as err:
        LPIPS().load_pretrained()
    msg = str(err.value)
    assert "vgg16-397923af.pth" in msg and str(tmp / "hub" / "checkpoints") in msg
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in msg and VGG16_ENV in msg
    assert isinstance(err.value, FileNotFoundError)

    torch.save(fake_vgg16_state_dict(), tmp / "v.pth")
    monkeypatch.setenv(VGG16_ENV, str(tmp / "v.pth"))
    with pytest.raises(WeightsNotFound) as err:
        LPIPS()(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))
    msg = str(err.value)
    assert "'vgg.pth'" in msg and str(tmp / "cache" / "taming" / "lpips" / "vgg.pth") in msg
    assert str(tmp / "pkg" / "vgg.pth") in msg and "PerceptualSimilarity" in msg


def test_wrong_vgg_file_lists_key_mismatch(no_weight_dirs, monkeypatch):
    from taming.losses.lpips import LPIPS

    tmp = no_weight_dirs
    vgg = fake_vgg16_state_dict()
    del vgg["features.28.bias"]
    vgg["features.1.weight"] = torch.zeros(3)  # e.g. a batch-norm VGG: indices shift
    vgg["features.5.weight"] = torch.zeros(128, 64, 1, 1)
    torch.save(vgg, tmp / "bad.pth")
    torch.save(fake_lin_state_dict(), tmp / "lin.pth")
    with pytest.raises(CheckpointError) as err:
        LPIPS(vgg_path=tmp / "bad.pth", lin_path=tmp / "lin.pth").load_pretrained()
    msg = str(err.value)
    assert "missing 1: slice5.28.bias" in msg and "unexpected 1: slice1.1.weight" in msg
    assert "wrong shape 1: slice2.5.weight" in msg and "bad.pth" in msg


def test_no_files_needed_for_perceptual_weight_zero_or_checkpoint(no_weight_dirs, fixture_model, expected):
    from taming.modules.losses.vqperceptual import VQLPIPSWithDiscriminator

    # The fixture model got its LPIPS weights from model.ckpt: forward needs no file.
    x = expected["x"]
    assert fixture_model.loss.perceptual_loss.weights_loaded
    fixture_model.loss(torch.tensor(0.0), x, x.flip(-1), 1, 0)
    loss = VQLPIPSWithDiscriminator(disc_start=0, perceptual_weight=0.0, disc_ndf=8)
    loss.ensure_weights()  # nothing to read
    out, log = loss(torch.tensor(0.5), x, x * 0.5, 1, 0)
    assert log["train/disc_loss"].item() > 0
    with torch.no_grad():
        out, log = loss(torch.tensor(0.5), x, x * 0.5, 0, 0)
    assert log["train/p_loss"].item() == 0.0 and close(log["train/rec_loss"], (x * 0.5).abs().mean())


# -- original-style Lightning 1.x checkpoint ---------------------------------------------------------------
def test_original_lightning_checkpoint_loads(tmp_path, expected):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from taming.checkpoint import read_state_dict
    from taming.config import instantiate_from_config

    sd = read_state_dict(VQGAN / "model.ckpt")
    adam = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))])
    ckpt = {
        "epoch": 12, "global_step": 3456, "pytorch-lightning_version": "1.0.8",
        "state_dict": sd,
        "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.1), "monitor": "val/rec_loss"}},
        "optimizer_states": [adam.state_dict(), adam.state_dict()],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {"ddconfig": OmegaConf.create({"ch": 32, "ch_mult": [1, 2]}), "n_embed": 64},
    }
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    cfg = OmegaConf.load(VQGAN / "config.yaml")
    cfg.model.params.ckpt_path = str(path)
    model = instantiate_from_config(cfg.model).eval()
    assert torch.equal(model.quantize.embedding.weight, sd["quantize.embedding.weight"])
    xrec, _ = model(expected["x"])
    assert close(xrec, expected["xrec"])


def test_checkpoint_key_mismatch_is_listed(tmp_path):
    from taming.checkpoint import read_state_dict
    from taming.config import instantiate_from_config

    sd = read_state_dict(VQGAN / "model.ckpt")
    del sd["quant_conv.bias"]
    sd["decoder.extra.weight"] = torch.zeros(1)
    sd["post_quant_conv.weight"] = torch.zeros(16, 15, 1, 1)
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": sd}, path)
    cfg = OmegaConf.load(VQGAN / "config.yaml")
    cfg.model.params.ckpt_path = str(path)
    with pytest.raises(CheckpointError) as err:
        instantiate_from_config(cfg.model)
    msg = str(err.value)
    assert "missing 1: quant_conv.bias" in msg and "unexpected 1: decoder.extra.weight" in msg
    assert "wrong shape 1: post_quant_conv.weight" in msg
