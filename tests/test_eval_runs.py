"""`taming eval reconstruction` and `taming eval likelihood` on tiny runs the tests make, and on run
folders in the original's layout (configs/*-project.yaml + checkpoints/last.ckpt from the compat fixtures)."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from taming.cli.main import main
from taming.eval.image_metrics import psnr, ssim
from taming.eval.inception import FIDInceptionV3
from taming.eval.reconstruction import checkpoint_lpips, evaluate_reconstruction
from taming.eval.runs import batch_images, load_evaluated, split_batches
from helpers import FIXTURES, make_run, seg_transformer_config, vqgan_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models


@pytest.fixture(autouse=True)
def no_weight_files(tmp_path, monkeypatch):
    """No LPIPS or Inception files anywhere, whatever this machine holds."""
    for var in ("TAMING_INCEPTION", "TAMING_VGG16", "TAMING_LPIPS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("vq"), vqgan_config(16), "vq")


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("seg"), seg_transformer_config(None, None), "seg")


def original_layout_run(root, fixture, size):
    """The original's run folder: <now>-project.yaml (model + data) and checkpoints/last.ckpt."""
    run = root / "logs" / "2021-01-01T00-00-00_original"
    (run / "configs").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    config = yaml.safe_load((FIXTURES / fixture / "config.yaml").read_text())
    config["data"] = {"target": "main.DataModuleFromConfig", "params": {"batch_size": 2, "validation": {
        "target": "taming.data.landscapes.LandscapesValidation", "params": {"size": size, "length": 3}}}}
    (run / "configs" / "2021-01-01T00-00-00-project.yaml").write_text(yaml.safe_dump(config))
    (run / "checkpoints" / "last.ckpt").symlink_to(FIXTURES / fixture / "model.ckpt")
    return run


def _json(path):
    return json.loads(path.read_text())


@torch.no_grad()
def _nll(model, batch) -> float:
    """The transformer's objective: mean cross-entropy of every image code (eval mode)."""
    logits, target = model.forward_codes(*model.get_codes(batch))
    return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1)))


@pytest.mark.slow
def test_reconstruction_of_a_first_stage_run(vq_run, tmp_path, capsys):
    weights = tmp_path / "inception.pth"
    torch.save(FIDInceptionV3().state_dict(), weights)
    out = tmp_path / "rec.json"
    assert main(["eval", "reconstruction", "-r", str(vq_run), "--precision", "fp32", "--inception-weights",
                 str(weights), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    got = _json(out)
    assert "lpips" not in got and "vgg16-397923af.pth" in got["skipped"]["lpips"]  # no files: left out, with why
    assert "left out" in printed and "psnr" in printed
    model, config, ckpt = load_evaluated(str(vq_run))
    assert checkpoint_lpips(ckpt, config) is None  # trained with perceptual_weight 0: its LPIPS keys are untrained
    x = torch.cat([batch_images(b, "image") for b in split_batches(config, "validation")])  # (2, 3, 16, 16)
    with torch.no_grad():
        xrec = model(x)[0].clamp(-1, 1)
        codes = model.encode(x)[2][2].reshape(-1)
    assert got["images"] == 2
    assert got["psnr"] == pytest.approx(float(psnr(x, xrec).mean()), rel=1e-5)
    assert got["ssim"] == pytest.approx(float(ssim(x, xrec).mean()), rel=1e-5)
    assert got["codes_used"] == len(codes.unique()) and got["codebook_size"] == 16
    p = torch.bincount(codes, minlength=16).double() / codes.numel()
    assert got["perplexity"] == pytest.approx(math.exp(-(p[p > 0] * p[p > 0].log()).sum()), rel=1e-6)
    assert got["rfid"] > 0


@pytest.mark.slow
def test_reconstruction_uses_the_checkpoints_lpips_and_user_errors(tmp_path, capsys):
    run = original_layout_run(tmp_path, "vqgan", 64)
    model, config, ckpt = load_evaluated(str(run))
    lp = checkpoint_lpips(ckpt, config)
    assert lp is not None  # the original VQGAN checkpoint carries LPIPS (VGG16 + lin) under loss.*
    expected = torch.load(FIXTURES / "vqgan" / "expected.pt", weights_only=True)
    assert torch.allclose(lp(expected["x"], expected["xrec"]), expected["lpips"], rtol=1e-4)
    batch = {"image": expected["x"].permute(0, 2, 3, 1)}  # channels-last, as datasets give it
    got = evaluate_reconstruction(model, [batch], "image", lpips=lp)
    xrec = expected["xrec"].clamp(-1, 1)
    assert got["psnr"] == pytest.approx(float(psnr(expected["x"], xrec).mean()), rel=1e-4)
    assert got["lpips"] == pytest.approx(float(lp(expected["x"], xrec).mean()), rel=1e-4)
    assert main(["eval", "reconstruction", "-r", str(run), "--limit", "1", "--no-rfid"]) == 0  # --precision auto
    assert main(["eval", "reconstruction", "-r", str(run), "--split", "train"]) == 2
    assert "no data.params.train" in capsys.readouterr().err
    assert main(["eval", "reconstruction", "-r", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_likelihood_of_a_transformer_run(seg_run, tmp_path):
    out = tmp_path / "nll.json"
    assert main(["eval", "likelihood", "-r", str(seg_run), "--precision", "fp32", "--json", str(out)]) == 0
    got = _json(out)
    model, config, _ = load_evaluated(str(seg_run))
    batch = next(iter(split_batches(config, "validation")))  # the whole split: 2 images
    want = _nll(model, batch)
    assert got["nll_per_code"] == pytest.approx(want, rel=1e-5)
    # 16 px images, f=2: 64 codes for 16*16*3 values; vocabulary 16
    assert got["codes_per_image"] == 64 and got["pixel_values_per_image"] == 768 and got["vocab_size"] == 16
    assert got["bits_per_dim"] == pytest.approx(want * 64 / 768 / math.log(2), rel=1e-5)
    assert got["uniform_bits_per_dim"] == pytest.approx(4 * 64 / 768)


def test_likelihood_and_reconstruction_of_an_original_run_folder(tmp_path, vq_run, capsys):
    run = original_layout_run(tmp_path, "transformer_uncond", 64)
    out = tmp_path / "nll.json"
    assert main(["eval", "likelihood", "-r", str(run / "checkpoints" / "last.ckpt"), "--limit", "2",
                 "--precision", "fp32", "--json", str(out)]) == 0
    got = _json(out)
    assert got["images"] == 2 and got["codes_per_image"] == 64 and got["vocab_size"] == 64
    assert 0 < got["nll_per_code"] < 3 * math.log(64)
    # the transformer's first stage is what `eval reconstruction` measures on a transformer run
    assert main(["eval", "reconstruction", "-r", str(run), "--limit", "2", "--no-rfid", "--json", str(out),
                 "--precision", "fp32"]) == 0
    assert _json(out)["codebook_size"] == 64 and _json(out)["skipped"]["rfid"] == "--no-rfid"
    assert main(["eval", "likelihood", "-r", str(vq_run)]) == 2
    assert "not a transformer" in capsys.readouterr().err


def test_likelihood_on_pre_tokenized_codes_equals_the_image_path(seg_run, tmp_path):
    """A run trained on `taming tokenize` shards (the demo's transformer): same NLL from the codes."""
    from taming.data.codes import write_code_shards

    model, config, _ = load_evaluated(str(seg_run))
    batch = next(iter(split_batches(config, "validation")))
    z, c = model.get_codes(batch)  # identity permuter: z in raster order (2, 64)
    shards = write_code_shards(str(tmp_path / "validation-%06d.tar"),
                               [{"z": z[i].reshape(8, 8), "c": c[i]} for i in range(2)], maxcount=1)
    codes_yaml = tmp_path / "codes.yaml"
    codes_yaml.write_text(yaml.safe_dump({"data": {"params": {"validation": {
        "target": "taming.data.codes.CodeShards", "params": {"urls": shards, "shuffle": 0, "shuffle_shards": False}}}}}))
    project = next((seg_run / "configs").glob("*-project.yaml"))
    nll_all, nll_first = _nll(model, batch), _nll(model, {k: v[:1] for k, v in batch.items()})
    for limit, want in ((None, nll_all), ("1", nll_first)):
        out = tmp_path / "nll.json"
        extra = ["--limit", limit] if limit else []
        assert main(["eval", "likelihood", "-r", str(seg_run), "--config", str(project), str(codes_yaml),
                     "--precision", "fp32", "--json", str(out), *extra]) == 0
        got = _json(out)
        assert got["images"] == (1 if limit else 2) and got["pixel_values_per_image"] == 768
        assert got["nll_per_code"] == pytest.approx(want, rel=1e-5)


def test_eval_leaves_autograd_on(seg_run):
    assert main(["eval", "likelihood", "-r", str(seg_run), "--precision", "fp32"]) == 0
    assert torch.is_grad_enabled()
