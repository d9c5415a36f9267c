"""Every path on every device present (the `device` fixture: the CPU, and CUDA where there is a GPU):
encode and decode, generate (a CUDA graph on a GPU) and sample_window, both training stages."""
import lightning as L
import torch
from torch.utils.data import DataLoader

from taming.models.vqgan import VQModel
from taming.precision import prepare_first_stage
from taming.sampling import generate, sample_window
from taming.tokenizer.vqgan import VQGAN
from taming.transformer.gpt import GPT
from test_first_stage_training import DD, GAN, Images
from test_transformer_model import build_fixture, channels_last_batch, expected


def accelerator(device: str) -> str:
    return "gpu" if device == "cuda" else "cpu"


def test_encode_decode(device):
    torch.manual_seed(0)
    model = VQGAN(DD, 16, 4).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    codes = model.encode_to_codes(x)  # (2, 8, 8), the CPU float32 reference
    images = model.decode_codes(codes)
    fast = prepare_first_stage(model.to(device), "auto")
    got = fast.encode_to_codes(x.to(device))
    assert got.device.type == device and (got.cpu() == codes).float().mean() > 0.9
    out = fast.decode_codes(codes.to(device)).cpu()
    assert out.dtype == torch.float32 and (out - images).abs().max() < 0.1


def test_generate_and_window(device):
    torch.manual_seed(0)
    gpt = GPT(11, 24, n_layer=2, n_head=2, n_embd=16).eval()
    cond = torch.randint(0, 11, (3, 5))
    want = generate(gpt, cond, 12, greedy=True)  # CPU float32
    gpt.to(device)
    got = generate(gpt, cond.to(device), 12, greedy=True, precision="fp32")
    assert got.device.type == device and (got.cpu() == want).float().mean() > 0.9
    auto = generate(gpt, cond.to(device), 12, top_k=5, precision="auto",
                    generator=torch.Generator(device).manual_seed(0))
    assert auto.shape == (3, 12) and int(auto.max()) < 11
    grid = sample_window(gpt, cond[:, :4].reshape(3, 2, 2).repeat(1, 2, 3).to(device), window=(2, 2),
                         greedy=True, precision="auto")
    assert grid.shape == (3, 4, 6) and grid.device.type == device


def test_first_stage_trains(device):
    model = VQModel(ddconfig=DD, lossconfig=GAN, n_embed=16, embed_dim=4)
    model.learning_rate = 1e-3
    before = model.encoder.conv_in.weight.detach().clone()
    t = L.Trainer(max_steps=3, accelerator=accelerator(device), devices=1, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    t.fit(model, DataLoader(Images(6), batch_size=2))
    assert t.global_step == 3 and not torch.equal(model.encoder.conv_in.weight.detach().cpu(), before)


def test_transformer_stage_trains(device):
    model = build_fixture("transformer_seg").train()
    model.learning_rate = 1e-3
    before = model.transformer.head.weight.detach().clone()
    loader = DataLoader([channels_last_batch(expected("transformer_seg"))], batch_size=None)
    t = L.Trainer(max_steps=1, accelerator=accelerator(device), devices=1, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False)
    t.fit(model, loader)
    assert not torch.equal(model.transformer.head.weight.detach().cpu(), before)
