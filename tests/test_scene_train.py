"""Scene transformers end to end: the original's scene configs train through `taming train` (a tiny
first stage and GPT given on the command line), and `taming sample-scene` samples from a JSON layout
and from a dataset split."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from helpers import COMPAT, SHARED
from taming.checkpoint import read_checkpoint, save_state_dict
from taming.cli.main import main
from taming.config import instantiate_from_config
from test_scene_data import write_open_images

pytestmark = pytest.mark.slow  # training runs of the scene configs

SIZE = 32  # pixels; the first stage halves it once: 16 x 16 = 256 codes, as the configs' 16 x 16 latents
DDCONFIG = {"double_z": False, "z_channels": 8, "resolution": SIZE, "in_channels": 3, "out_ch": 3, "ch": 32,
            "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
QUIET = ["lightning.trainer.enable_progress_bar=false", "lightning.trainer.enable_model_summary=false",
         "lightning.trainer.num_sanity_val_steps=0", "lightning.trainer.log_every_n_steps=1"]


def first_stage(tmp_path: Path) -> Path:
    """A small untrained VQGAN saved as the configs' first-stage checkpoint (8192 codes, as theirs)."""
    model = instantiate_from_config({"target": "taming.models.vqgan.VQModel", "params": {
        "embed_dim": 8, "n_embed": 8192, "ddconfig": DDCONFIG,
        "lossconfig": {"target": "taming.modules.losses.DummyLoss"}}})
    return save_state_dict(tmp_path / "first_stage.ckpt", model)


def small_model(ckpt: Path) -> list[str]:
    stage = "model.params.first_stage_config.params"
    gpt = "model.params.transformer_config.params"
    return [f"{stage}.ckpt_path={ckpt}", f"{stage}.embed_dim=8", f"{stage}.ddconfig={json.dumps(DDCONFIG)}",
            f"{gpt}.n_layer=1", f"{gpt}.n_head=2", f"{gpt}.n_embd=32", "data.params.batch_size=2",
            "data.params.num_workers=0"]


def data_at(path: Path, **params) -> list[str]:
    return [f"data.params.{split}.params.{key}={value}" for split in ("train", "validation")
            for key, value in {"data_path": path, "target_image_size": SIZE, **params}.items()]


def only_run(logdir: Path) -> Path:
    (run,) = [p for p in logdir.iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("coco_scene")
    args = ["train", "-b", str(COMPAT / "configs" / "coco_scene_images_transformer.yaml"), "-t", "--no-test",
            "--accelerator", "cpu", "--max_steps", "3", "-l", str(tmp / "logs"), *QUIET,
            *small_model(first_stage(tmp)), *data_at(SHARED / "data" / "coco_annotations_100"),
            "lightning.callbacks.image_logger.params.batch_frequency=2",
            "lightning.callbacks.image_logger.params.max_images=2"]
    assert main(args) == 0
    return only_run(tmp / "logs")


def test_coco_scene_config_trains(coco_run):
    ckpt = read_checkpoint(coco_run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3
    assert ckpt["state_dict"]["transformer.pos_emb"].shape == (1, 348, 32)  # 256 image + 92 layout positions
    logged = {p.name.split("_gs-")[0] for p in (coco_run / "images" / "train").glob("*.png")}
    assert {"inputs", "conditioning", "samples_nopix"} <= logged  # the layout is drawn beside the samples
    layout = Image.open(next((coco_run / "images" / "train").glob("conditioning_gs-000000*.png")))
    assert layout.size == (2 * (SIZE + 2) + 2, SIZE + 4)


def test_sample_scene_from_a_json_layout(coco_run, tmp_path, capsys):
    layout = tmp_path / "layout.json"
    layout.write_text(json.dumps({"objects": [{"category": "dog", "box": [0.1, 0.4, 0.4, 0.5]},
                                              {"category": "grass", "box": [0.0, 0.7, 1.0, 0.3]}]}))
    out = tmp_path / "out" / "scene.png"
    assert main(["sample-scene", "-r", str(coco_run), "--layout", str(layout), "-o", str(out), "--samples", "2",
                 "--precision", "fp32"]) == 0
    assert Image.open(out).size == (2 * SIZE, SIZE)  # two samples side by side
    drawn = Image.open(out.with_name("scene_layout.png"))
    assert drawn.size == (SIZE, SIZE) and len(drawn.getcolors(4096)) > 2  # boxes on white
    capsys.readouterr()

    layout.write_text(json.dumps({"objects": [{"category": "dgo", "box": [0.1, 0.4, 0.4, 0.5]}]}))
    assert main(["sample-scene", "-r", str(coco_run), "--layout", str(layout), "-o", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "object 0: unknown category 'dgo'; did you mean 'dog'?" in line
    layout.write_text(json.dumps({"objects": [{"category": "dog", "box": [0.5, 0.4, 0.6, 0.5]}]}))
    assert main(["sample-scene", "-r", str(coco_run), "--layout", str(layout), "-o", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "object 0 (dog): box [0.5, 0.4, 0.6, 0.5] is outside [0, 1]" in line


def test_sample_scene_from_a_dataset_split(coco_run, tmp_path):
    out = tmp_path / "samples"
    assert main(["sample-scene", "-r", str(coco_run), "--split", "validation", "--count", "2", "-o", str(out),
                 "--top-k", "10"]) == 0  # the default precision, auto
    names = sorted(p.name for p in out.iterdir())
    assert names == ["000000_000000017379_layout.png", "000000_000000017379_sample0.png",
                     "000001_000000017899_layout.png", "000001_000000017899_sample0.png"]


def test_open_images_scene_config_trains(tmp_path):
    write_open_images(tmp_path / "oi", "train")
    write_open_images(tmp_path / "oi_val", "validation")
    args = ["train", "-b", str(COMPAT / "configs" / "open_images_scene_images_transformer.yaml"), "-t", "--no-test",
            "--accelerator", "cpu", "--max_steps", "2", "-l", str(tmp_path / "logs"), *QUIET,
            *small_model(first_stage(tmp_path)), *data_at(tmp_path / "oi", min_object_area=0.01),
            f"data.params.validation.params.data_path={tmp_path / 'oi_val'}", "lightning.callbacks.image_logger=null"]
    assert main(args) == 0
    assert read_checkpoint(only_run(tmp_path / "logs") / "checkpoints" / "last.ckpt")["global_step"] == 2


# ---- the app: layout conditioning ------------------------------------------------------------------
def test_app_offers_dataset_layouts_drawn_as_boxes(coco_run):
    from taming.generation import conditioning as cond
    from taming.generation.drawing import SamplingSpec, decode_codes, sample_grid
    from taming.app.layouts import LayoutExample, is_scene_model, layout_example
    from taming.generation.runs import load_run, resolve_run

    run = load_run(resolve_run(str(coco_run)))
    assert is_scene_model(run.model) and cond.example_sources(run) == [cond.VALIDATION]
    examples = cond.validation_examples(run)
    example = layout_example(run, examples, 0, (64, 64))
    assert isinstance(example, LayoutExample) and example.condition.shape == (1, 92)
    assert example.picture.shape == (64, 64, 3) and example.picture.dtype.name == "uint8"
    assert (example.picture != 255).any(axis=-1).mean() > 0.02  # boxes and names on white
    assert example.image.shape == (1, 3, SIZE, SIZE)
    assert example.caption.startswith("validation example 0 (000000017379.jpg): 8 objects: ")
    condition = cond.encode_condition(run, example)
    assert condition.codes.tolist() == example.condition.tolist()  # the tokens are the codes
    pixels = decode_codes(run, sample_grid(run, condition, SamplingSpec((16, 16), top_k=10, precision="fp32")))
    assert pixels.shape == (1, 3, SIZE, SIZE)


def test_app_page_shows_the_layout_and_samples(coco_run, monkeypatch):
    import sys

    from streamlit.testing.v1 import AppTest

    from taming.app.launch import PAGE as page
    from taming.generation import conditioning as cond

    monkeypatch.setattr(sys, "argv", [str(page), "--logdir", str(coco_run)])
    at = AppTest.from_file(str(page), default_timeout=60).run()
    assert not at.exception and not at.error
    assert at.radio(key="source").options == [cond.VALIDATION]
    assert len(at.image) == 2 and "8 objects" in at.image[0].captions[0]  # the layout drawn, the real image
    at.selectbox(key="precision").set_value("fp32")
    at.button(key="sample_button").click().run()
    assert not at.exception and not at.error and at.session_state["sample"]["pixels"].shape == (SIZE, SIZE, 3)
