"""Quantizers, codebook options and encoder/decoder contracts, on tiny constructed cases."""
import math

import numpy as np
import pytest
import torch

from taming.checkpoint import read_state_dict
from taming.config import ConfigError, load_config
from taming.modules.diffusionmodules.model import Decoder, Encoder
from taming.modules.util import SOSProvider
from taming.modules.vqvae.quantize import EMAVectorQuantizer, GumbelQuantize, VectorQuantizer, VectorQuantizer2
from taming.tokenizer.codebook import CodebookHealth
from taming.tokenizer.layers import Upsample, upsample_conv3x3
from taming.tokenizer.vqgan import EMAVQGAN, VQGAN, GumbelVQGAN

from helpers import FIXTURES

TINY = dict(ch=32, out_ch=3, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), in_channels=3,
            resolution=16, z_channels=8, double_z=False, dropout=0.0)


def grid_codebook(n_e=8, e_dim=4):
    """A quantizer whose code j is the vector (j, 0, 0, 0): nearest code of (v, ...) is round(v)."""
    q = VectorQuantizer2(n_e, e_dim, beta=0.25)
    with torch.no_grad():
        q.embedding.weight.zero_()
        q.embedding.weight[:, 0] = torch.arange(n_e, dtype=torch.float)
    return q


def latent(values, e_dim=4):
    """(B, H, W) code values -> (B, e_dim, H, W) latent with those values in channel 0."""
    z = torch.zeros(values.shape[0], e_dim, *values.shape[1:])
    z[:, 0] = values
    return z


# -- VectorQuantizer2 -------------------------------------------------------------------------

def test_index_layouts_flat_sane_and_remap(tmp_path):
    codes = torch.tensor([[[1, 2], [3, 4]], [[5, 6], [7, 0]]]).float()
    q = grid_codebook()
    _, _, (_, _, idx) = q(latent(codes))
    assert idx.shape == (8,) and idx.tolist() == [1, 2, 3, 4, 5, 6, 7, 0]
    q.sane_index_shape = True
    assert q(latent(codes))[2][2].shape == (2, 2, 2)
    np.save(tmp_path / "used.npy", np.arange(8))
    qr = VectorQuantizer2(8, 4, 0.25, remap=str(tmp_path / "used.npy"))
    assert qr(latent(codes))[2][2].shape == (8, 1)  # the original's remapped layout


@pytest.mark.parametrize("unknown,expected", [("extra", 3), (1, 1)])
def test_remap_round_trip_and_unknown_index(tmp_path, unknown, expected):
    used = np.array([2, 5, 7])
    np.save(tmp_path / "used.npy", used)
    q = VectorQuantizer2(8, 4, 0.25, remap=str(tmp_path / "used.npy"), unknown_index=unknown)
    q.load_state_dict(grid_codebook().state_dict() | {"used": torch.from_numpy(used)})
    assert "used" in q.state_dict()  # persistent, as the original's key
    assert q.re_embed == (4 if unknown == "extra" else 3)
    codes = torch.tensor([[[2, 5], [7, 2]]]).float()
    z_q, _, (_, _, idx) = q(latent(codes))
    assert idx.reshape(-1).tolist() == [0, 1, 2, 0]  # positions in `used`
    torch.testing.assert_close(q.get_codebook_entry(idx, (1, 2, 2, 4)), z_q)  # remapped round trip
    _, _, (_, _, idx) = q(latent(torch.tensor([[[3.0, 5.0]]])))  # code 3 is not in `used`
    assert idx.reshape(-1).tolist() == [expected, 1]


def test_remap_random_unknown_stays_in_range(tmp_path):
    np.save(tmp_path / "used.npy", np.array([0, 1]))
    q = VectorQuantizer2(8, 4, 0.25, remap=str(tmp_path / "used.npy"))
    q.load_state_dict(grid_codebook().state_dict() | {"used": torch.tensor([0, 1])})
    idx = q(latent(torch.full((1, 8, 8), 6.0)))[2][2]
    assert idx.min() >= 0 and idx.max() <= 1 and len(set(idx.reshape(-1).tolist())) == 2


def test_remap_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        VectorQuantizer2(8, 4, 0.25, remap=str(tmp_path / "nope.npy"))
    np.save(tmp_path / "used.npy", np.arange(3))
    with pytest.raises(ValueError, match="unknown_index"):
        VectorQuantizer2(8, 4, 0.25, remap=str(tmp_path / "used.npy"), unknown_index="bogus")


@pytest.mark.parametrize("legacy", [True, False])
def test_legacy_and_corrected_beta_placement(legacy):
    # all latents 0.5 away from their nearest code 0: both terms have mse 0.25, loss 1.25 * 0.25
    q = grid_codebook()
    q.legacy = legacy
    z = latent(torch.full((1, 2, 2), 0.4)).requires_grad_()
    with torch.no_grad():
        q.embedding.weight[0, 0] = -0.1
    _, loss, _ = q(z)
    assert loss.item() == pytest.approx(1.25 * 0.25 / 4, rel=1e-6)  # mse over 4 channels, 3 of them 0
    loss.backward()
    enc_weight, code_weight = (1.0, 0.25) if legacy else (0.25, 1.0)
    # d/dz mean((z - e)^2) over 16 elements = 2 * 0.5 / 16 per channel-0 entry
    assert z.grad[0, 0, 0, 0].item() == pytest.approx(enc_weight * 2 * 0.5 / 16, rel=1e-5)
    # code 0 collects all 4 positions: -4 * 2 * 0.5 / 16
    assert q.embedding.weight.grad[0, 0].item() == pytest.approx(-code_weight * 4 * 2 * 0.5 / 16, rel=1e-5)


def test_get_codebook_entry_shapes_for_all_quantizers():
    idx = torch.randint(0, 8, (2 * 3 * 5,))
    for q in (VectorQuantizer2(8, 4, 0.25), VectorQuantizer(8, 4, 0.25), GumbelQuantize(6, 4, 8),
              EMAVectorQuantizer(8, 4, 0.25)):
        out = q.get_codebook_entry(idx, (2, 3, 5, 4))
        assert out.shape == (2, 4, 3, 5), type(q).__name__
        weight = q.embed.weight if isinstance(q, GumbelQuantize) else q.embedding.weight
        torch.testing.assert_close(out[1, :, 2, 4], weight[idx.reshape(2, 3, 5)[1, 2, 4]])


def test_distances_stay_float32_under_autocast():
    torch.manual_seed(1)
    q = VectorQuantizer2(512, 8, 0.25)
    z = torch.randn(2, 8, 16, 16) * 0.002  # codes are ~1/512 apart: bf16 distances would tie
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z_q, loss, (_, _, idx) = q(z)
    assert z_q.dtype == torch.float32 and loss.dtype == torch.float32
    assert torch.equal(idx, q(z)[2][2])


def test_legacy_vector_quantizer_outputs():
    q_old = VectorQuantizer(8, 4, 0.25)
    q_old.load_state_dict(grid_codebook().state_dict())
    codes = torch.tensor([[[1, 1], [2, 3]]]).float()
    z_q, loss, (perplexity, min_encodings, idx) = q_old(latent(codes))
    assert idx.shape == (4, 1) and idx.reshape(-1).tolist() == [1, 1, 2, 3]
    assert min_encodings.shape == (4, 8) and min_encodings.sum().item() == 4
    # histogram (2, 1, 1)/4: exp(-(0.5 ln 0.5 + 2 * 0.25 ln 0.25)) = 2^1.5
    assert perplexity.item() == pytest.approx(2 ** 1.5, rel=1e-5)
    torch.testing.assert_close(z_q, latent(codes))
    assert loss.item() == 0.0


# -- codebook health and options --------------------------------------------------------------

def test_codebook_health_known_values():
    health = CodebookHealth(8, dead_after=2)
    for _ in range(2):
        health.update(torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))
    stats = health.stats()
    assert stats["usage"] == 0.5 and stats["codes_used"] == 4
    assert stats["perplexity"] == pytest.approx(4.0, rel=1e-6)  # 4 codes used equally
    assert stats["dead_codes"] == 4 and stats["dead_fraction"] == 0.5  # codes 4..7 unused for 2 steps
    health.update(torch.tensor([4, 4, 4, 4]))
    assert health.stats()["dead_codes"] == 3 and health.stats()["perplexity"] == pytest.approx(1.0)


def test_quantizer_tracks_health_in_training_only_and_keeps_keys():
    q = grid_codebook()
    assert set(q.state_dict()) == {"embedding.weight"}  # health buffers are not persistent
    codes = torch.tensor([[[1, 2], [1, 2]]]).float()
    q.eval()(latent(codes))
    assert math.isnan(q.codebook_stats()["perplexity"])  # nothing recorded in eval
    q.train()(latent(codes))
    assert q.codebook_stats()["usage"] == 2 / 8
    assert q.codebook_stats()["perplexity"] == pytest.approx(2.0, rel=1e-6)
    with torch.no_grad():  # e.g. image logging in training mode: not a training step
        q(latent(torch.tensor([[[5.0]]])))
    assert q.codebook_stats()["usage"] == 2 / 8


def test_dead_code_restart_moves_unused_codes_onto_encoder_outputs():
    torch.manual_seed(0)
    q = VectorQuantizer2(16, 4, 0.25, restart_unused_codes=2).train()
    z = torch.randn(2, 4, 4, 4) + 5.0  # far from the init codebook: one code wins everything
    q(z)
    assert q.codebook_stats()["codes_used"] == 1
    before = q.embedding.weight.detach().clone()
    q(z)  # 15 codes have now been unused for 2 steps -> restarted
    moved = (q.embedding.weight != before).any(1)
    assert int(moved.sum()) == 15
    z_rows = z.permute(0, 2, 3, 1).reshape(-1, 4)
    dist = torch.cdist(q.embedding.weight[moved].detach(), z_rows).min(1).values
    assert dist.max() < 0.05  # each restarted code sits on an encoder output
    q(z)
    assert q.codebook_stats()["codes_used"] > 8  # the restarted codes are chosen again


def test_factorized_l2_codes_train_a_step():
    torch.manual_seed(0)
    q = VectorQuantizer2(32, 16, 0.25, codebook_dim=4, l2_normalize=True)
    assert set(q.state_dict()) == {"embedding.weight", "in_proj.weight", "in_proj.bias",
                                   "out_proj.weight", "out_proj.bias"}
    assert q.embedding.weight.shape == (32, 4)
    z = torch.randn(2, 16, 4, 4, requires_grad=True)
    z_q, loss, (_, _, idx) = q(z)
    assert z_q.shape == z.shape
    torch.testing.assert_close(q.get_codebook_entry(idx, (2, 4, 4, 16)), z_q.detach())
    opt = torch.optim.SGD(list(q.parameters()) + [z], lr=0.5)
    (loss + (z_q - z.detach()).pow(2).mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in q.parameters())
    assert z.grad.abs().sum() > 0  # straight-through reaches the encoder through in_proj
    opt.step()
    assert q(z)[1].item() < loss.item()


# -- Gumbel and EMA ---------------------------------------------------------------------------

def test_gumbel_eval_is_argmax_and_uniform_kl_is_zero():
    q = GumbelQuantize(num_hiddens=6, embedding_dim=4, n_embed=8).eval()
    z = torch.randn(2, 6, 3, 3)
    z_q, kl, (_, _, ind) = q(z)
    assert torch.equal(ind, q.proj(z).argmax(1))
    torch.testing.assert_close(z_q, q.get_codebook_entry(ind.reshape(-1), (2, 3, 3, 4)))
    with torch.no_grad():
        q.proj.weight.zero_()
        q.proj.bias.zero_()
    assert q(z)[1].item() == pytest.approx(0.0, abs=1e-7)  # uniform code posterior == the prior
    q.train()
    z_q, _, (_, _, ind) = q(z)
    torch.testing.assert_close(z_q, q.embed.weight[ind].permute(0, 3, 1, 2))  # hard straight-through


def test_ema_quantizer_updates_by_moving_average():
    torch.manual_seed(0)
    q = EMAVectorQuantizer(n_embed=4, embedding_dim=2, beta=0.25, decay=0.9)
    assert set(q.state_dict()) == {"embedding.weight", "embedding.cluster_size", "embedding.embed_avg"}
    assert list(q.parameters()) == []  # nothing for an optimizer
    z = torch.randn(1, 2, 3, 3)
    w0, avg0 = q.embedding.weight.clone(), q.embedding.embed_avg.clone()
    q.eval()(z)
    assert torch.equal(q.embedding.weight, w0)
    _, loss, (_, enc, idx) = q.train()(z)
    z_flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    counts = 0.1 * enc.sum(0)
    avg = 0.9 * avg0 + 0.1 * enc.t() @ z_flat
    smoothed = (counts + 1e-5) / (counts.sum() + 4e-5) * counts.sum()
    torch.testing.assert_close(q.embedding.cluster_size, counts)
    torch.testing.assert_close(q.embedding.weight, avg / smoothed[:, None])
    assert loss.item() == pytest.approx(0.25 * (w0[idx] - z_flat).pow(2).mean().item(), rel=1e-5)


@pytest.mark.slow
def test_ema_vqgan_trains_and_encodes():
    model = EMAVQGAN(TINY, n_embed=16, embed_dim=8)
    assert "quantize.embedding.embed_avg" in model.state_dict()
    x = torch.randn(1, 3, 16, 16)
    w0 = model.quantize.embedding.weight.clone()
    xrec, diff = model(x)
    (xrec - x).pow(2).mean().add(diff).backward()
    assert model.encoder.conv_in.weight.grad is not None
    assert not torch.equal(model.quantize.embedding.weight, w0)
    assert model.eval().encode_to_codes(x).shape == (1, 8, 8)


# -- encoder/decoder contracts ----------------------------------------------------------------

def test_non_square_input_and_ignored_kwargs():
    cfg = dict(TINY, unknown_option=1, give_pre_end=False)  # one dict for both halves, as clients do
    enc, dec = Encoder(**cfg), Decoder(**cfg)
    assert dec.num_resolutions == 2 and dec.z_shape == (1, 8, 8, 8)
    z = enc(torch.randn(1, 3, 16, 24))
    assert z.shape == (1, 8, 8, 12)
    assert dec(z).shape == (1, 3, 16, 24)
    model = VQGAN(TINY, n_embed=16, embed_dim=8).eval()
    codes = model.encode_to_codes(torch.randn(2, 3, 16, 24))
    assert codes.shape == (2, 8, 12) and model.decode_codes(codes).shape == (2, 3, 16, 24)


@pytest.mark.parametrize("channels_last", [False, True])
def test_phase_upsample_conv_equals_upsample_then_conv(channels_last):
    torch.manual_seed(0)
    up = Upsample(8).double()
    x = torch.randn(2, 8, 5, 7, dtype=torch.double)
    if channels_last:
        x, up = x.contiguous(memory_format=torch.channels_last), up.to(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = up.conv(torch.nn.functional.interpolate(x1, scale_factor=2.0, mode="nearest"))
    out = upsample_conv3x3(x2, up.conv.weight, up.conv.bias)
    torch.testing.assert_close(out, ref)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    ref.pow(2).sum().backward()
    grads = [p.grad.clone() for p in up.parameters()]
    up.zero_grad()
    out.pow(2).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad)
    for g, p in zip(grads, up.parameters()):
        torch.testing.assert_close(p.grad, g)


def test_double_z_and_avgpool_resampling():
    enc = Encoder(**dict(TINY, double_z=True, resamp_with_conv=False))
    assert enc(torch.randn(1, 3, 16, 16)).shape == (1, 16, 8, 8)
    assert not any("downsample" in k for k in enc.state_dict())


def test_unknown_quantizer_option_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown key 'restart_unused_code'; did you mean 'restart_unused_codes'"):
        VQGAN(TINY, n_embed=16, embed_dim=8, restart_unused_code=5)
    with pytest.raises(ConfigError, match="model.params: unknown key 'embed_dimm'; did you mean 'embed_dim'"):
        VQGAN(TINY, n_embed=16, embed_dim=8, embed_dimm=5)
    model = VQGAN(TINY, n_embed=16, embed_dim=8, l2_normalize=True, restart_unused_codes=10)
    assert model.quantize.l2_normalize and model.quantize.health.restart_after == 10


def test_core_composes_with_lightning_module():
    import lightning as L

    class Shell(VQGAN, L.LightningModule):
        def __init__(self):
            VQGAN.__init__(self, TINY, n_embed=16, embed_dim=8)
            self.loss = torch.nn.Identity()  # the shells add their loss after the core

    model = Shell()
    assert isinstance(model, L.LightningModule) and model.global_step == 0
    assert list(model.state_dict())[0] == "encoder.conv_in.weight"
    del model.loss  # downstream projects delete it for inference
    assert model(torch.randn(1, 3, 16, 16))[0].shape == (1, 3, 16, 16)


def test_gumbel_core_keys():
    model = GumbelVQGAN(dict(TINY, z_channels=12), n_embed=16, embed_dim=8)
    sd = model.state_dict()
    assert sd["quant_conv.weight"].shape == (12, 12, 1, 1)  # proj maps z_channels -> logits
    assert sd["quantize.proj.weight"].shape == (16, 12, 1, 1)
    assert sd["post_quant_conv.weight"].shape == (12, 8, 1, 1)


def test_sos_provider():
    c, _, (_, _, idx) = SOSProvider(7).encode(torch.zeros(3, 5))
    assert c.dtype == torch.long and c.tolist() == [[7]] * 3 and idx is c


# -- fast path --------------------------------------------------------------------------------

@pytest.mark.slow
@torch.no_grad()
def test_bf16_channels_last_fast_path_close_to_float32():
    params = load_config(FIXTURES / "vqgan" / "config.yaml").model.params
    model = VQGAN(params.ddconfig, params.n_embed, params.embed_dim).eval()
    sd = read_state_dict(FIXTURES / "vqgan" / "model.ckpt")
    model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("loss.")})
    x = torch.load(FIXTURES / "vqgan" / "expected.pt", weights_only=True)["x"]
    codes = model.encode_to_codes(x)
    ref = model.decode_codes(codes)

    def rel(a):
        return float((a - ref).norm() / ref.norm())

    # bf16 autocast with float32 weights; random weights make this a worst case (about 4 %)
    assert (model.encode_to_codes(x, fast=True) == codes).float().mean() > 0.85  # near-ties may flip
    fast = model.decode_codes(codes, fast=True)
    assert fast.dtype == torch.float32 and fast.shape == ref.shape and rel(fast) < 0.08
    # channels_last float32 weights: the same numbers up to summation order
    model.prepare_fast()
    assert model.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(model.encode_to_codes(x), codes)
    assert rel(model.decode_codes(codes)) < 1e-5
    # bf16-stored convolutions for inference; the quantizer stays float32
    model.prepare_fast(torch.bfloat16)
    assert model.decoder.conv_out.weight.dtype == torch.bfloat16
    assert model.quantize.embedding.weight.dtype == torch.float32
    assert (model.encode_to_codes(x, fast=True) == codes).float().mean() > 0.85
    assert rel(model.decode_codes(codes, fast=True)) < 0.08
    assert set(model.state_dict()) == set(sd) - {k for k in sd if k.startswith("loss.")}


def test_quantizers_return_named_tuples_that_unpack_as_the_original():
    from taming.tokenizer import CodeInfo, EMAVectorQuantizer, GumbelQuantize, QuantizerOutput, VectorQuantizer, \
        VectorQuantizer2

    z = torch.randn(2, 4, 3, 3)
    for q in (VectorQuantizer2(8, 4, beta=0.25), VectorQuantizer(8, 4, beta=0.25),
              EMAVectorQuantizer(n_embed=8, embedding_dim=4, beta=0.25), GumbelQuantize(4, 4, n_embed=8).eval()):
        out = q(z)
        assert isinstance(out, QuantizerOutput) and isinstance(out.info, CodeInfo), type(q).__name__
        quant, loss, (perplexity, encodings, indices) = out
        assert quant is out.quant and loss is out.loss and indices is out.info.indices
        assert quant.shape == (2, 4, 3, 3) and indices.numel() == 18
