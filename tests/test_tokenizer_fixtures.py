"""The first-stage cores reproduce the original code's outputs (fixtures vqgan, gumbel, segvq).

The Lightning shells (with their losses) are tested elsewhere; here the plain cores load the
fixture checkpoints minus training-only `loss.*` weights and the segmentation `colorize` buffer.
"""
import pytest
import torch

from taming.checkpoint import read_state_dict
from taming.config import load_config
from taming.tokenizer.vqgan import VQGAN, GumbelVQGAN

from helpers import FIXTURES


def close(actual, expected, rtol=1e-5):
    """float32 to 1e-5 relative; absolute tolerance scaled to the tensor's magnitude so that
    near-zero entries are judged against the tensor's scale, not their own."""
    atol = rtol * max(float(expected.abs().max()), 1e-6) * 2
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def load_core(name, cls):
    params = load_config(FIXTURES / name / "config.yaml").model.params
    extra = {"kl_weight": params.kl_weight} if cls is GumbelVQGAN else {}
    model = cls(params.ddconfig, params.n_embed, params.embed_dim, **extra).eval()
    sd = {k: v for k, v in read_state_dict(FIXTURES / name / "model.ckpt").items()
          if not k.startswith("loss.") and k != "colorize"}
    model.load_state_dict(sd, strict=True)
    expected = torch.load(FIXTURES / name / "expected.pt", weights_only=True)
    return model, expected


@pytest.fixture(scope="module")
def vqgan():
    return load_core("vqgan", VQGAN)


@torch.no_grad()
def test_vqgan_encode_quantize_decode(vqgan):
    model, e = vqgan
    prequant = model.quant_conv(model.encoder(e["x"]))
    close(prequant, e["prequant"])
    quant, qloss, (perplexity, min_encodings, indices) = model.quantize(prequant)
    close(quant, e["quant"])
    close(qloss, e["qloss"])
    assert perplexity is None and min_encodings is None  # as the original VectorQuantizer2
    assert indices.shape == (2 * 8 * 8,)  # flat, as downstream projects expect
    assert torch.equal(indices.reshape(2, -1), e["indices"])
    close(model.decode(quant), e["dec"])


@torch.no_grad()
def test_vqgan_forward_and_decode_code(vqgan):
    model, e = vqgan
    xrec, diff = model(e["x"])
    close(xrec, e["xrec"])
    close(diff, e["qloss"])
    close(model.decode_code(e["indices"]), e["dec_code"])  # (B, h*w) square rows
    close(model.decode_code(e["indices"].reshape(2, 8, 8)), e["dec_code"])
    entry = model.quantize.get_codebook_entry(e["indices"].reshape(-1), (2, 8, 8, 16))
    close(entry, e["quant"])  # straight-through value == the code vectors
    assert model.get_last_layer() is model.decoder.conv_out.weight


@torch.no_grad()
def test_vqgan_codes_fast_api_float32_is_exact(vqgan):
    model, e = vqgan
    codes = model.encode_to_codes(e["x"])
    assert codes.shape == (2, 8, 8) and torch.equal(codes.reshape(2, -1), e["indices"])
    close(model.decode_codes(codes), e["dec_code"])


@pytest.mark.slow
@torch.no_grad()
def test_gumbel_logits_indices_and_decoding():
    model, e = load_core("gumbel", GumbelVQGAN)
    assert model.quant_conv.out_channels == 16 and model.quantize.n_embed == 128
    logits = model.quantize.proj(model.quant_conv(model.encoder(e["x"])))
    close(logits, e["logits"])
    _, _, (_, _, indices) = model.encode(e["x"])
    assert indices.shape == (2, 8, 8)  # Gumbel indices are (B, h, w), as the original's
    assert torch.equal(indices, e["indices"])
    close(model.decode_code(e["indices"]), e["dec_code"])
    _, _, _, logits_again = model.quantize(model.quant_conv(model.encoder(e["x"])), return_logits=True)
    close(logits_again, e["logits"])


@pytest.mark.slow
@torch.no_grad()
def test_segmentation_core_quant_indices_rec():
    model, e = load_core("segvq", VQGAN)
    quant, _, (_, _, indices) = model.encode(e["segmentation"])
    close(quant, e["quant"])
    assert torch.equal(indices.reshape(2, -1), e["indices"])
    close(model.decode(quant), e["rec"])
