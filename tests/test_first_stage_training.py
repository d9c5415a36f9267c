"""The Lightning shells train: manual GAN optimization, batch-counting global_step, accumulation,
resume, Gumbel temperature schedule, bf16, segmentation and EMA variants, downstream attributes."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from taming.models.vqgan import EMAVQ, GumbelVQ, VQModel, VQNoDiscModel, VQSegmentationModel

DD = dict(double_z=False, z_channels=4, resolution=16, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 1],
          num_res_blocks=1, attn_resolutions=[8], dropout=0.0)
GAN = dict(target="taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
           params=dict(disc_start=2, perceptual_weight=0.0, disc_ndf=8, disc_num_layers=2, disc_weight=0.8))


class Images(Dataset):
    def __init__(self, n=8, key="image", channels=3, onehot=False):
        g = torch.Generator().manual_seed(1)
        if onehot:
            labels = torch.randint(0, channels, (n, 16, 16), generator=g)
            self.x = torch.nn.functional.one_hot(labels, channels).float()  # (n, H, W, C) as datasets give
        else:
            self.x = torch.rand(n, 16, 16, channels, generator=g) * 2 - 1
        self.key = key

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {self.key: self.x[i]}


class Record(L.Callback):
    """What each training batch saw: global_step at its start, selected logged values at its end."""

    def __init__(self, keys=()):
        self.steps, self.logged, self.temps, self.keys = [], [], [], keys

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps.append(pl_module.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        m = trainer.callback_metrics
        self.logged.append({k: float(m[k]) for k in self.keys if k in m})
        if hasattr(pl_module.quantize, "temperature"):
            self.temps.append(pl_module.quantize.temperature)


def trainer(max_steps, callbacks=(), **kw):
    return L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
                     num_sanity_val_steps=0, limit_val_batches=0, **kw)


def tiny(cls=VQModel, lossconfig=GAN, lr=1e-3, **kw):
    model = cls(ddconfig=DD, lossconfig=lossconfig, n_embed=16, embed_dim=4, **kw)
    model.learning_rate = lr
    return model


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(module, before):
    """Whether the weights moved (a hinge loss can leave the last bias exactly still)."""
    return any(not torch.equal(p, b) for p, b in zip(module.parameters(), before))


@pytest.mark.slow
def test_manual_gan_training_counts_batches():
    model = tiny()
    enc, disc = snapshot(model.encoder), snapshot(model.loss.discriminator)
    rec = Record(keys=("train/disc_factor_step", "train/discloss_step", "train/codebook/usage"))
    t = trainer(4, [rec])
    t.fit(model, DataLoader(Images(8), batch_size=2))
    assert t.global_step == 4 and rec.steps == [0, 1, 2, 3]  # one step per batch, as the original
    assert changed(model.encoder, enc) and changed(model.loss.discriminator, disc)
    assert [r["train/disc_factor_step"] for r in rec.logged] == [0.0, 0.0, 1.0, 1.0]
    assert [r["train/discloss_step"] == 0.0 for r in rec.logged] == [True, True, False, False]
    assert all(0 < r["train/codebook/usage"] <= 1 for r in rec.logged)


def test_gan_step_equals_the_step_written_out():
    """One batch is: generator step judged by the discriminator as it was, then a discriminator step
    on the same (pre-update) reconstructions; both Adam(0.5, 0.9) at the set learning rate."""
    import copy

    model = tiny(lossconfig=dict(GAN, params=dict(GAN["params"], disc_start=0)))
    ref = copy.deepcopy(model)
    x = Images(1)[0]["image"][None].permute(0, 3, 1, 2)
    xrec, qloss = ref(x)
    disc = ref.loss.discriminator
    disc.requires_grad_(False)
    aeloss, _ = ref.loss(qloss, x, xrec, 0, 0, last_layer=ref.get_last_layer())
    ae = ref.autoencoder_parameters()
    ae_grads = torch.autograd.grad(aeloss, ae)
    disc.requires_grad_(True)
    discloss, _ = ref.loss(qloss, x, xrec.detach(), 1, 0)
    disc_grads = torch.autograd.grad(discloss, list(disc.parameters()))
    grads = {}
    for params, gs in ((ae, ae_grads), (list(disc.parameters()), disc_grads)):
        for p, g in zip(params, gs):
            p.grad, grads[p] = g, g
        torch.optim.Adam(params, lr=1e-3, betas=(0.5, 0.9)).step()

    trainer(1).fit(model, DataLoader(Images(1), batch_size=1))
    compared = 0
    for got, want in zip(model.parameters(), ref.parameters()):
        if want not in grads:
            continue  # the LPIPS weights: not trained
        # Adam's first step is about lr * sign(grad): where a gradient is rounding noise (a bias
        # right before a one-channel-per-group GroupNorm) its sign is arbitrary; compare the rest.
        sure = grads[want].abs() > 1e-6
        torch.testing.assert_close(got[sure], want[sure], rtol=0, atol=1e-6)
        compared += int(sure.sum())
    assert compared > 0.9 * sum(p.numel() for p in grads)


@pytest.mark.slow
def test_gradient_accumulation_counts_optimizer_steps():
    model = tiny(accumulate_grad_batches=2)
    rec = Record()
    t = trainer(2, [rec])
    t.fit(model, DataLoader(Images(8), batch_size=2))
    assert t.global_step == 2 and rec.steps == [0, 0, 1, 1]  # optimizer steps, as Lightning 1 counted


@pytest.mark.slow
def test_resume_continues_step_count(tmp_path):
    model = tiny()
    t = trainer(2)
    t.fit(model, DataLoader(Images(8), batch_size=2))
    path = tmp_path / "last.ckpt"
    t.save_checkpoint(path)
    saved = model.encoder.conv_in.weight.detach().clone()

    model2 = tiny()
    rec = Record(keys=("train/disc_factor_step",))
    t2 = trainer(3, [rec])
    t2.fit(model2, DataLoader(Images(8), batch_size=2), ckpt_path=path)
    assert rec.steps == [2] and t2.global_step == 3
    assert rec.logged[0]["train/disc_factor_step"] == 1.0  # disc_start 2 reached
    assert not torch.equal(model2.encoder.conv_in.weight, saved)  # restored, then trained on


@pytest.mark.parametrize("isa, kernels, want", [("avx512_bf16", "AVX512", True), ("avx512", "AVX512", True),
                                                ("avx512_bf16", "AVX2", False), ("avx2", "AVX2", False),
                                                ("baseline", "DEFAULT", False)])
def test_channels_last_training_only_with_avx512_kernels(monkeypatch, isa, kernels, want):
    from taming.hardware import Hardware
    from taming.training import first_stage

    monkeypatch.setattr(first_stage, "detect", lambda device: Hardware("cpu", "CPU", isa))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: kernels)
    assert first_stage.channels_last_training("cpu") is want
    assert first_stage.channels_last_training("cuda") is False


@pytest.mark.slow
def test_channels_last_training_trains_as_nchw(monkeypatch):
    """The layout chosen for speed changes no number beyond float summation order; the optimizer
    states follow the weights' layout."""
    from taming.training import first_stage

    trained = {}
    for channels_last in (False, True):
        monkeypatch.setattr(first_stage, "channels_last_training", lambda device, c=channels_last: c)
        torch.manual_seed(0)
        model = tiny(lossconfig=dict(GAN, params=dict(GAN["params"], disc_start=0)))
        trainer(2).fit(model, DataLoader(Images(4), batch_size=2))
        w = model.encoder.down[0].block[0].conv1.weight
        assert w.is_contiguous(memory_format=torch.channels_last) is channels_last
        state = model.trainer.optimizers[0].state[w]
        assert state["exp_avg"].stride() == w.stride()
        trained[channels_last] = {n: p.detach().clone() for n, p in model.named_parameters()}
    # trained weights only: a bias followed by a GroupNorm has a gradient of zero in exact arithmetic,
    # whose rounding noise Adam turns into steps of +-lr in either layout, and Adam magnifies
    # rounding where a gradient is tiny. So: nearly every element agrees to rounding (a state paired
    # with the wrong elements moves most of them by ~lr = 1e-3)
    diff = torch.cat([(trained[True][n] - trained[False][n]).abs().flatten() for n in trained[False]
                      if not n.endswith("bias") and not n.startswith("loss.perceptual_loss.")])
    assert diff.numel() > 10_000 and (diff < 1e-5).float().mean() > 0.999 and diff.mean() < 1e-6


def test_fused_adam_states_are_loaded_in_the_parameters_layout():
    """A state saved beside NCHW weights, loaded for channels_last ones (the fused kernel would pair
    wrong elements silently), steps as the NCHW optimizer does."""
    from taming.optim import fused

    torch.manual_seed(0)
    w, grads = torch.randn(8, 4, 3, 3), [torch.randn(8, 4, 3, 3) for _ in range(2)]
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        ref = torch.nn.Parameter(w.clone())
        opt_ref = fused(torch.optim.Adam, [ref], lr=0.1)
        ref.grad = grads[0].clone()
        opt_ref.step()
        p = torch.nn.Parameter(ref.detach().clone().contiguous(memory_format=layout))
        opt = fused(torch.optim.Adam, [p], lr=0.1)
        opt.load_state_dict(opt_ref.state_dict())
        assert opt.state[p]["exp_avg"].stride() == p.stride()
        p.grad = grads[1].clone().contiguous(memory_format=layout)
        opt.step()
        results.append(p.detach())
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-7)


@pytest.mark.slow
def test_bf16_mixed_training_runs():
    model = tiny(lossconfig=dict(GAN, params=dict(GAN["params"], disc_start=0)))
    rec = Record(keys=("train/aeloss_step", "train/d_weight_step"))
    trainer(2, [rec], precision="bf16-mixed").fit(model, DataLoader(Images(4), batch_size=2))
    assert all(torch.isfinite(torch.tensor(r["train/aeloss_step"])) for r in rec.logged)
    assert rec.logged[-1]["train/d_weight_step"] > 0
    assert model.encoder.conv_in.weight.dtype == torch.float32


@pytest.mark.slow
def test_gumbel_temperature_follows_schedule():
    sched = dict(target="taming.lr_scheduler.LambdaWarmUpCosineScheduler",
                 params=dict(warm_up_steps=1, max_decay_steps=4, lr_start=0.5, lr_max=1.0, lr_min=0.1))
    model = tiny(GumbelVQ, temperature_scheduler_config=sched, kl_weight=1e-3)
    rec = Record()
    trainer(2, [rec]).fit(model, DataLoader(Images(4), batch_size=2))
    want = [model.temperature_scheduler(s) for s in range(3)]
    assert rec.temps == pytest.approx(want[:2]) and want == pytest.approx([0.5, 1.0, 0.1 + 0.45 * (1 + 0.5)])


@pytest.mark.slow
def test_ema_and_nodisc_variants_train():
    model = tiny(EMAVQ)
    assert model.quantize not in model.autoencoder_parameters()
    code_before = model.quantize.embedding.weight.detach().clone()
    trainer(2).fit(model, DataLoader(Images(4), batch_size=2))
    assert not torch.equal(model.quantize.embedding.weight, code_before)  # moved by EMA, not Adam

    nodisc = tiny(VQNoDiscModel, lossconfig=dict(GAN, params=dict(GAN["params"], disc_factor=0.0)))
    disc = snapshot(nodisc.loss.discriminator)
    enc = snapshot(nodisc.encoder)
    t = trainer(1)
    t.fit(nodisc, DataLoader(Images(2), batch_size=2))
    assert t.global_step == 1 and changed(nodisc.encoder, enc) and not changed(nodisc.loss.discriminator, disc)


@pytest.mark.slow
def test_segmentation_model_trains_and_logs_rgb():
    dd = dict(DD, in_channels=5, out_ch=5)
    model = VQSegmentationModel(n_labels=5, ddconfig=dd, n_embed=16, embed_dim=4, image_key="segmentation",
                                lossconfig=dict(target="taming.modules.losses.segmentation.BCELossWithQuant"))
    model.learning_rate = 1e-3
    assert model.state_dict()["colorize"].shape == (3, 5, 1, 1)
    data = Images(4, key="segmentation", channels=5, onehot=True)
    rec = Record(keys=("train/bce_loss_step",))
    trainer(2, [rec]).fit(model, DataLoader(data, batch_size=2))
    assert len(rec.logged) == 2 and rec.logged[-1]["train/bce_loss_step"] > 0
    logs = model.eval().log_images(next(iter(DataLoader(data, batch_size=2))))
    assert logs["inputs"].shape == logs["reconstructions"].shape == (2, 3, 16, 16)
    assert logs["inputs"].min() == -1 and logs["inputs"].max() == 1


def test_downstream_contract():
    model = tiny(sane_index_shape=False).eval()
    x = torch.rand(2, 3, 16, 32) * 2 - 1  # non-square
    q = model.quantize
    assert (q.e_dim, q.n_e, tuple(q.embedding.weight.shape)) == (4, 16, (16, 4))
    assert model.decoder.num_resolutions == 2
    quant, _, info = model.encode(x)
    assert quant.shape == (2, 4, 8, 16) and info[2].shape == (2 * 8 * 16,)
    entry = q.get_codebook_entry(info[2], shape=(2, 8, 16, 4))
    assert torch.allclose(entry, quant, atol=1e-7)  # quant is z + (e - z): equal up to rounding
    assert tiny(sane_index_shape=True).eval().encode(x)[2][2].shape == (2, 8, 16)
    logs = model.log_images({"image": x.permute(0, 2, 3, 1)})
    assert logs["reconstructions"].shape == x.shape

    sched = dict(target="taming.lr_scheduler.LambdaWarmUpCosineScheduler",
                 params=dict(warm_up_steps=0, max_decay_steps=10, lr_start=0.9, lr_max=0.9, lr_min=1e-6))
    g = tiny(GumbelVQ, temperature_scheduler_config=sched).eval()
    assert g.quantize.n_embed == 16 and tuple(g.quantize.embed.weight.shape) == (16, 4)
    assert isinstance(g, VQModel) and g.quantize.proj.out_channels == 16
    assert g.encode(x)[2][2].shape == (2, 8, 16)

    assert hasattr(model, "loss")
    del model.loss  # inference clients drop the training loss
    assert not any(k.startswith("loss.") for k in model.state_dict())
    assert model(x)[0].shape == x.shape


def test_fit_without_learning_rate_is_a_clear_error():
    model = tiny(lr=None)
    with pytest.raises(Exception, match="learning_rate is not set"):
        trainer(1).fit(model, DataLoader(Images(2), batch_size=2))


def test_fit_fails_early_without_lpips_files(tmp_path, monkeypatch):
    from taming.losses import lpips_files
    from taming.losses.lpips_files import WeightsNotFound

    monkeypatch.delenv("TAMING_VGG16", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(lpips_files, "lin_search_dirs", lambda: [tmp_path])
    model = tiny(lossconfig=dict(GAN, params=dict(GAN["params"], perceptual_weight=1.0)))
    rec = Record()
    with pytest.raises(WeightsNotFound, match="vgg16-397923af.pth"):
        trainer(1, [rec]).fit(model, DataLoader(Images(2), batch_size=2))
    assert rec.steps == []  # before the first batch
