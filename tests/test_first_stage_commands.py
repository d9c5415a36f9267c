"""`taming reconstruct`, `encode` and `decode` on a first stage of ours and on the original's fixture run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taming.cli.main import main
from taming.generation.files import to_uint8
from taming.generation.first_stage import load_image
from taming.generation.runs import first_stage_run
from taming.precision import prepare_first_stage
from helpers import FIXTURES, make_run, original_run, seg_transformer_config, vqgan_config

pytestmark = pytest.mark.usefixtures("one_thread")
FIXTURE = FIXTURES / "vqgan"


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory) -> Path:
    """A VQGAN run of ours: its checkpoint holds discriminator weights (loss.*), dropped on load."""
    return make_run(tmp_path_factory.mktemp("vq"), vqgan_config(), "vqgan")


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for k, (w, h) in enumerate(sizes):
        paths.append(folder / f"img{k}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def test_encode_decode_and_reconstruct_agree(vq_run, tmp_path, capsys):
    images = write_images(tmp_path / "in", [(16, 16), (21, 13)])
    run = ["-r", str(vq_run), "--device", "cpu", "--precision", "fp32"]
    assert main(["encode", *run, str(tmp_path / "in"), "-o", str(tmp_path / "codes")]) == 0
    codes = [np.load(tmp_path / "codes" / f"img{k}.npy") for k in range(2)]
    assert codes[0].shape == (8, 8) and codes[1].shape == (6, 10) and codes[0].dtype == np.int64  # 13x21 -> 12x20 px
    model, _ = first_stage_run(str(vq_run), device="cpu")
    assert not any(k.startswith("loss.") for k in model.state_dict())
    x = load_image(images[1], 2)
    assert x.shape == (1, 3, 12, 20)
    np.testing.assert_array_equal(codes[1], model.encode_to_codes(x)[0].numpy())
    assert main(["decode", *run, str(tmp_path / "codes"), "-o", str(tmp_path / "dec")]) == 0
    assert main(["reconstruct", *run, *map(str, images), "-o", str(tmp_path / "rec")]) == 0
    for k in range(2):  # decoding the codes is the reconstruction
        dec = np.asarray(Image.open(tmp_path / "dec" / f"img{k}.png"))
        np.testing.assert_array_equal(dec, np.asarray(Image.open(tmp_path / "rec" / f"img{k}.png")))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "dec" / "img1.png")),
                                  to_uint8(model.decode_codes(torch.from_numpy(codes[1])[None]))[0])
    assert "reconstruct: 2 input(s), 2 file(s) written" in capsys.readouterr().out
    # a rerun skips what exists; --size resizes and centre-crops
    assert main(["reconstruct", *run, str(tmp_path / "in"), "-o", str(tmp_path / "rec")]) == 0
    assert "2 input(s), 0 file(s) written" in capsys.readouterr().out
    assert main(["reconstruct", *run, str(images[1]), "--size", "8", "-o", str(tmp_path / "small")]) == 0
    assert Image.open(tmp_path / "small" / "img1.png").size == (8, 8)


def test_a_transformer_run_gives_its_first_stage(tmp_path):
    run = make_run(tmp_path, seg_transformer_config(None, None), "seg")
    model, _ = first_stage_run(str(run), device="cpu")
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(model.decoder.conv_out.weight, saved["first_stage_model.decoder.conv_out.weight"])


def test_an_original_first_stage_run_decodes_the_original_codes(tmp_path):
    run = original_run(tmp_path / "logs", FIXTURE, "vqgan")  # its checkpoint holds LPIPS + discriminator weights
    expected = torch.load(FIXTURE / "expected.pt", weights_only=True)
    codes = expected["indices"].reshape(2, 8, 8).numpy()
    np.save(tmp_path / "codes.npy", codes)
    assert main(["decode", "-r", str(run), str(tmp_path / "codes.npy"), "-o", str(tmp_path / "out"),
                 "--precision", "fp32"]) == 0
    for b in range(2):
        picture = np.asarray(Image.open(tmp_path / "out" / f"codes_{b:03d}.png")).astype(float)
        target = ((expected["dec_code"][b].clamp(-1, 1).permute(1, 2, 0) + 1) * 127.5).numpy()
        assert np.abs(picture - target).max() <= 0.5 + 1e-3


def test_user_errors_are_one_line(vq_run, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.full((2, 2), 99))
    assert main(["decode", "-r", str(vq_run), str(tmp_path / "bad.npy"), "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (f"taming decode: error: {tmp_path / 'bad.npy'}: codes 99..99 are "
                                               "outside the codebook (0..15)")
    assert main(["encode", "-r", str(vq_run), str(tmp_path / "nothing.png"), "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == f"taming encode: error: input not found: {tmp_path / 'nothing.png'}"
    if not torch.cuda.is_available():
        assert main(["decode", "-r", str(vq_run), str(tmp_path / "bad.npy"), "-o", str(tmp_path / "o"),
                     "--device", "cuda"]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            "taming decode: error: --device cuda: no CUDA GPU is available here; use --device cpu")


def test_precision_prepares_the_first_stage(vq_run):
    exact, _ = first_stage_run(str(vq_run), device="cpu")
    assert prepare_first_stage(exact, "fp32").decoder.conv_out.weight.is_contiguous()  # fp32: untouched
    fast, _ = first_stage_run(str(vq_run), device="cpu")
    weight = prepare_first_stage(fast, "int8").decoder.conv_out.weight  # int8 is the GPT's: float32 here
    assert weight.dtype == torch.float32 and weight.is_contiguous(memory_format=torch.channels_last)
    half, _ = first_stage_run(str(vq_run), device="cpu")
    assert prepare_first_stage(half, "bf16").decoder.conv_out.weight.dtype == torch.bfloat16
    assert half.quantize.embedding.weight.dtype == torch.float32  # distances decide codes: float32
