"""Scene layouts: the datasets and token builders against the original's numbers.

COCO: ../shared/compat/fixtures/scene/coco_validation.pt is what the original returns on the
100-image subset. Open Images: a tiny dataset in the published CSV layout, written here, with tokens
worked out by hand.
"""
from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
import torch
from PIL import Image
from torch.utils.data import DataLoader

from helpers import FIXTURES
from taming.data.annotated_objects_coco import AnnotatedObjectsCoco
from taming.data.annotated_objects_open_images import AnnotatedObjectsOpenImages
from taming.data.collate import collate
from taming.data.conditional_builder import ObjectsBoundingBoxConditionalBuilder, ObjectsCenterPointsConditionalBuilder
from taming.data.conditional_builder.plot import PALETTE, font_path
from taming.data.errors import DataError
from taming.data.helper_types import Annotation
from taming.data.layout_crops import apply_crop, plan_crop


def object_tuples(tokens: torch.Tensor, n: int) -> Counter:
    values = tokens.tolist()[:-2]
    return Counter(tuple(values[i:i + n]) for i in range(0, len(values), n))


@pytest.fixture(scope="module")
def coco_fixture():
    return torch.load(FIXTURES / "scene" / "coco_validation.pt", weights_only=False)


def coco(shared: str, **changes) -> AnnotatedObjectsCoco:
    params = dict(data_path=f"{shared}/data/coco_annotations_100", split="validation",
                  keys=["image", "objects_bbox", "objects_center_points", "file_name"], no_tokens=8192,
                  target_image_size=256, min_object_area=1e-5, min_objects_per_image=2, max_objects_per_image=30,
                  crop_method="center", random_flip=False, use_group_parameter=True, encode_crop=True)
    return AnnotatedObjectsCoco(**{**params, **changes})


def test_coco_matches_the_original(shared_dir, coco_fixture):
    params = {k: v for k, v in coco_fixture["params"].items() if k != "data_path"}
    ds = AnnotatedObjectsCoco(data_path=str(shared_dir / "data" / "coco_annotations_100"), **params)
    assert len(ds) == coco_fixture["length"] == 92
    assert ds.no_classes == 171  # 80 things + 92 stuff classes, without "other"
    for i, expected in enumerate(coco_fixture["examples"]):
        example = ds[i]
        assert example["file_name"] == expected["file_name"]
        for key, n in (("objects_bbox", 3), ("objects_center_points", 2)):
            got, want = example[key], expected[key]
            assert got.dtype == torch.long and got.shape == want.shape, key
            assert object_tuples(got, n) == object_tuples(want, n), (i, key)
            assert got[-2:].tolist() == want[-2:].tolist(), (i, key)  # the crop tokens
        assert example["image"].shape == (256, 256, 3) and example["image"].dtype == np.float32
        assert -1.0 <= example["image"].min() and example["image"].max() <= 1.0


def test_coco_examples_carry_annotations_crop_and_flip_and_batch(shared_dir):
    random.seed(0)
    ds = coco(shared_dir, split="train", crop_method="random-1d", random_flip=True,
              keys=["image", "objects_bbox", "file_name", "annotations"])
    example = ds[0]
    assert set(example) == {"image", "objects_bbox", "file_name", "annotations", "crop_bbox", "flipped"}
    assert all(isinstance(a, Annotation) for a in example["annotations"])
    x0, y0, w, h = example["crop_bbox"]
    assert 0 <= x0 and 0 <= y0 and x0 + w <= 1 + 1e-9 and y0 + h <= 1 + 1e-9 and max(w, h) == pytest.approx(1.0)
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate)))
    assert batch["objects_bbox"].shape == (3, 92) and batch["image"].shape == (3, 256, 256, 3)
    assert [len(a) for a in batch["annotations"]] == [len(ds[i]["annotations"]) for i in range(3)]
    flips = {bool(ds[0]["flipped"]) for _ in range(12)}
    assert flips == {True, False}


def test_flip_mirrors_boxes_and_the_crop():
    b = ObjectsBoundingBoxConditionalBuilder(4, 2, 1100, True, False, False)  # 33 x 33 grid
    thing = Annotation(area=0.0, image_id="a", bbox=(0.1, 0.2, 0.3, 0.4), category_no=1, category_id="1")
    plain = b.inverse_build(b.build([thing], (0.0, 0.0, 0.5, 1.0)))
    flipped = b.inverse_build(b.build([thing], (0.0, 0.0, 0.5, 1.0), horizontal_flip=True))
    (rep, box), crop = plain[0][0], plain[1]
    (rep_f, box_f), crop_f = flipped[0][0], flipped[1]
    assert rep == rep_f == 1
    assert box == pytest.approx((3 / 32, 6 / 32, 13 / 32 - 3 / 32, 19 / 32 - 6 / 32))  # corners on the grid
    assert box_f[0] == pytest.approx(1 - (0.1 + 0.3), abs=1 / 32) and box_f[2] == pytest.approx(box[2], abs=1 / 32)
    assert crop == pytest.approx((0, 0, 0.5, 1)) and crop_f == pytest.approx((0.5, 0, 0.5, 1))


def test_without_encode_crop_boxes_are_relative_to_the_crop():
    b = ObjectsCenterPointsConditionalBuilder(4, 3, 1100, False, False, False)
    inside = Annotation(area=0.0, image_id="a", bbox=(0.5, 0.0, 0.25, 0.5), category_no=2, category_id="2")
    outside = Annotation(area=0.0, image_id="a", bbox=(0.0, 0.6, 0.2, 0.2), category_no=3, category_id="3")
    tokens = b.build([inside, outside], crop_coordinates=(0.5, 0.0, 0.5, 0.5))
    assert tokens.shape == (6,)  # 3 objects x 2, no crop tokens
    (objects, crop) = b.inverse_build(tokens)
    assert crop is None and len(objects) == 1  # the object outside the crop is gone
    rep, (x, y) = objects[0]
    assert rep == 2 and (x, y) == pytest.approx((0.25, 0.5), abs=1 / 64)
    assert tokens.tolist()[2:] == [1099] * 4  # padding


def test_flags_round_trip_and_out_of_range_classes():
    b = ObjectsBoundingBoxConditionalBuilder(5, 1, 8192, False, True, True)
    thing = Annotation(area=0.0, image_id="a", bbox=(0.1, 0.1, 0.5, 0.5), category_no=3, category_id="x",
                       is_group_of=True, is_occluded=False, is_depiction=True, is_inside=True)
    assert b.object_representation(thing) == 3 + 5 * (1 | 4 | 8)
    back = b.representation_to_annotation(b.object_representation(thing))
    assert (back.category_no, back.is_group_of, back.is_occluded, back.is_depiction, back.is_inside) == \
        (3, True, False, True, True)
    assert ObjectsBoundingBoxConditionalBuilder(5, 1, 8192, False, False, False).object_representation(thing) == 3
    with pytest.raises(ValueError, match="category_no must be below"):
        b.build([thing._replace(category_no=8190)])
    with pytest.raises(ValueError, match="raise no_tokens"):
        ObjectsBoundingBoxConditionalBuilder(600, 1, 8192, False, True, True)


def test_plot_draws_boxes_labels_and_crop(shared_dir):
    assert font_path().is_file()
    builder = ObjectsBoundingBoxConditionalBuilder(3, 2, 8192, True, False, False)
    thing = Annotation(area=0.0, image_id="a", bbox=(0.25, 0.25, 0.5, 0.5), category_no=1, category_id="1")
    tokens = builder.build([thing], crop_coordinates=(0.0, 0.0, 1.0, 1.0))
    picture = builder.plot(tokens, ["sky", "dog", "tree"].__getitem__, (256, 192))
    assert picture.shape == (3, 192, 256) and picture.min() >= -1 and picture.max() <= 1
    pixels = ((picture + 1) * 127.5).round().byte().permute(1, 2, 0)  # (H, W, 3)
    assert tuple(pixels[96, 64 + 1].tolist()) == PALETTE[0]  # the box's left edge
    assert tuple(pixels[96, 1].tolist()) == (63, 63, 63)  # the crop's left edge
    assert tuple(pixels[96, 128].tolist()) == (255, 255, 255)  # inside the box
    label_area = pixels[48 + 3:48 + 20, 64 + 3:64 + 40]
    assert (label_area.sum(-1) < 200).any()  # dark text: the label "dog"
    ds = coco(shared_dir)
    dots = ds.conditional_builders["objects_center_points"].plot(ds[0]["objects_center_points"],
                                                                 ds.get_textual_label_for_category_no, (128, 128))
    assert dots.shape == (3, 128, 128) and (dots < 0.99).any()


def test_crop_plans():
    center = plan_crop(640, 480, 256, "center")
    assert center.resize_first == (341, 256) and center.window == (42, 0, 256, 256)
    assert center.box == pytest.approx((0.5 - 256 / 341 / 2, 0.0, 256 / 341, 1.0))
    rng = random.Random(0)
    for _ in range(20):
        two_d = plan_crop(640, 480, 256, "random-2d", rng)
        x0, y0, w, h = two_d.box
        assert 256 <= w * 640 <= 480 and w * 640 == pytest.approx(h * 480) and x0 + w <= 1 and y0 + h <= 1
    image = np.zeros((480, 640, 3), np.uint8)
    for method in ("none", "center", "random-1d", "random-2d"):
        assert apply_crop(image, plan_crop(640, 480, 256, method, rng)).shape == (256, 256, 3)
    with pytest.raises(DataError, match="crop_method 'random' unknown"):
        plan_crop(640, 480, 256, "random")


def test_user_errors_are_one_line(shared_dir, tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        coco(shared_dir, data_path=str(tmp_path))
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="keys \\['objects_box'\\] unknown"):
        coco(shared_dir, keys=["image", "objects_box"])
    with pytest.raises(DataError, match="split 'test' unknown"):
        coco(shared_dir, split="test")


# ---- Open Images: the published CSV layout, three classes after allow list and mapping ----------------------
CLASSES = [("/m/01g317", "Person"), ("/m/04yx4", "Man"), ("/m/0k4j", "Car"), ("/m/07j7r", "Tree"),
           ("/m/0zzzz", "Not in the allow list")]
HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
BOXES = [  # image, label, x0, x1, y0, y1, occluded, truncated, group, depiction, inside
    ("aaaa000000000000", "/m/04yx4", 0.1, 0.45, 0.2, 0.6, 1, 0, 0, 0, 0),   # Man -> Person, occluded
    ("aaaa000000000000", "/m/0k4j", 0.55, 0.9, 0.52, 1.0, 0, 1, 1, 1, 0),   # Car, group + depiction
    ("aaaa000000000000", "/m/0zzzz", 0.0, 1.0, 0.0, 1.0, 0, 0, 0, 0, 0),    # not an allowed class
    ("aaaa000000000000", "/m/07j7r", 0.0, 0.05, 0.0, 0.05, 0, 0, 0, 0, 0),  # too small
    ("bbbb000000000000", "/m/0k4j", 0.1, 0.9, 0.1, 0.9, 0, 0, 0, 0, 0),     # alone: too few objects
    ("cccc000000000000", "/m/07j7r", 0.0, 0.3, 0.0, 0.9, 0, 0, 0, 0, 1),    # Tree, inside
    ("cccc000000000000", "/m/07j7r", 0.6, 0.9, 0.1, 0.9, 0, 0, 0, 0, 0),
]


def write_open_images(root, split: str = "validation") -> None:
    """class descriptions (no header), boxes, image list and JPEGs, as the published V6 files."""
    (root / split).mkdir(parents=True)
    (root / "class-descriptions-boxable.csv").write_text("".join(f"{i},{n}\n" for i, n in CLASSES))
    rows = [",".join(str(v) for v in (b[0], "xclick", b[1], 1, *b[2:])) for b in BOXES]
    (root / {"validation": "validation-annotations-bbox.csv", "train": "oidv6-train-annotations-bbox.csv"}[split]
     ).write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    images = sorted({b[0] for b in BOXES})
    (root / {"validation": "validation-images.csv", "train": "train-images-boxable.csv"}[split]).write_text(
        "image_name\n" + "".join(f"{i}\n" for i in images))
    rng = np.random.default_rng(0)
    for image_id in images:
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / split / f"{image_id}.jpg")


def open_images(root, **changes) -> AnnotatedObjectsOpenImages:
    params = dict(data_path=str(root), split="validation", keys=["image", "objects_bbox", "objects_center_points",
                  "file_name", "annotations"], no_tokens=1100, target_image_size=32,
                  category_allow_list_target="taming.data.open_images_helper.top_300_classes_plus_coco_compatibility",
                  category_mapping_target="taming.data.open_images_helper.open_images_unify_categories_for_coco",
                  min_object_area=0.01, min_objects_per_image=2, max_objects_per_image=4, crop_method="none",
                  random_flip=False, use_group_parameter=True, use_additional_parameters=True, encode_crop=True)
    return AnnotatedObjectsOpenImages(**{**params, **changes})


def test_open_images_csv_layout_and_tokens(tmp_path):
    write_open_images(tmp_path)
    ds = open_images(tmp_path)
    # Man is merged into Person, "Not in the allow list" is dropped; ids numbered in sorted order
    assert ds.category_ids == ["/m/01g317", "/m/07j7r", "/m/0k4j"] and ds.no_classes == 3
    assert ds.image_ids == ["aaaa000000000000", "cccc000000000000"]
    example = ds[0]
    assert example["file_name"] == "aaaa000000000000.jpg" and example["image"].shape == (32, 32, 3)
    assert [a.category_id for a in example["annotations"]] == ["/m/01g317", "/m/0k4j"]
    # 33 x 33 grid: token(x, y) = round(32 y) * 33 + round(32 x); rep = class + 3 * flags
    person = (0 + 3 * 2, 6 * 33 + 3, 19 * 33 + 14)      # occluded
    car = (2 + 3 * (1 | 4), 17 * 33 + 18, 32 * 33 + 29)  # group, depiction
    assert object_tuples(example["objects_bbox"], 3) == Counter([person, car, (1099,) * 3, (1099,) * 3])
    assert object_tuples(example["objects_center_points"], 2) == Counter(
        [(6, 13 * 33 + 9), (17, 24 * 33 + 23), (1099, 1099), (1099, 1099)])
    assert example["objects_bbox"][-2:].tolist() == [0, 32 * 33 + 32]  # crop_method none: the whole image
    inside = ds[1]["objects_bbox"]
    assert sorted(t for t in inside.tolist()[:-2:3] if t != 1099) == [1, 1 + 3 * 8]
    labels = [ds.get_textual_label_for_category_no(n) for n in range(3)]
    assert labels == ["Person", "Tree", "Car"]


def test_open_images_without_flags_and_center_crop(tmp_path):
    write_open_images(tmp_path)
    ds = open_images(tmp_path, use_group_parameter=False, use_additional_parameters=False, crop_method="center")
    example = ds[0]
    assert sorted(t for t in example["objects_bbox"].tolist()[:-2:3] if t != 1099) == [0, 2]
    x0, _, w, _ = example["crop_bbox"]  # 64 x 48 -> 42 x 32, centre 32 x 32
    assert (x0, w) == pytest.approx((0.5 - 32 / 42 / 2, 32 / 42))
    with pytest.raises(DataError, match="columns"):
        (tmp_path / "validation-annotations-bbox.csv").write_text("ImageID,LabelName\nx,y\n")
        open_images(tmp_path)


def test_layout_json_to_tokens(shared_dir, tmp_path):
    from taming.scene import category_numbers, layout_tokens, parse_layout, read_layout

    ds = coco(shared_dir, keys=["objects_bbox"])
    names = category_numbers(ds)
    assert len(names) == 171 and ds.get_textual_label_for_category_no(names["dog"]) == "dog"
    path = tmp_path / "layout.json"
    path.write_text('[{"category": "dog", "box": [0.1, 0.4, 0.35, 0.5], "group": true}]')  # a bare list works too
    objects, crop = read_layout(path, names)
    assert crop == (0.0, 0.0, 1.0, 1.0) and objects[0].is_group_of is True
    tokens = layout_tokens(ds, "objects_bbox", objects, crop)
    n = 89  # 90 x 90 grid for 8192 tokens
    expected = (names["dog"] + 171, round(0.4 * n) * 90 + round(0.1 * n), round(0.9 * n) * 90 + round(0.45 * n))
    assert tuple(tokens[:3].tolist()) == expected and tokens[-2:].tolist() == [0, n * 90 + n]
    assert (tokens[3:-2] == 8191).all()
    with pytest.raises(DataError, match="layout: crop: box \\[0.5, 0, 0.6, 1\\] is outside"):
        parse_layout({"objects": [], "crop": [0.5, 0, 0.6, 1]}, names)
    with pytest.raises(DataError, match="object 0: unknown keys \\['colour'\\]"):
        parse_layout({"objects": [{"category": "dog", "box": [0, 0, 1, 1], "colour": "red"}]}, names)
    with pytest.raises(DataError, match="object 1: needs \"category\" and \"box\""):
        parse_layout({"objects": [{"category": "dog", "box": [0, 0, 1, 1]}, {"box": [0, 0, 1, 1]}]}, names)
    with pytest.raises(DataError, match="at most 30"):
        layout_tokens(ds, "objects_bbox", objects * 31)


@given(st.lists(st.tuples(st.integers(0, 9), st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0.01, 0.1),
                          st.floats(0.01, 0.1)), min_size=1, max_size=5))
@settings(max_examples=60, deadline=None)
def test_tokens_round_trip_to_the_grid(objects):
    """build -> inverse_build: every object comes back, its corners within half a grid step."""
    builder = ObjectsBoundingBoxConditionalBuilder(10, 5, 8192, True, False, False)
    annotations = [Annotation(area=w * h, image_id="a", bbox=(x, y, w, h), category_no=c, category_id=str(c))
                   for c, x, y, w, h in objects]
    back, crop = builder.inverse_build(builder.build(annotations))
    assert crop == pytest.approx((0.0, 0.0, 1.0, 1.0))
    step = 1 / 89
    for (c, x, y, w, h) in objects:
        found = [box for rep, box in back if rep == c and abs(box[0] - x) <= step / 2 + 1e-9
                 and abs(box[1] - y) <= step / 2 + 1e-9 and abs(box[0] + box[2] - (x + w)) <= step / 2 + 1e-9
                 and abs(box[1] + box[3] - (y + h)) <= step / 2 + 1e-9]
        assert found, (c, x, y, w, h, back)
    assert sorted(rep for rep, _ in back) == sorted(c for c, *_ in objects)


def test_layout_dataset_comes_from_the_run_config(shared_dir):
    from omegaconf import OmegaConf

    from taming.config import ConfigError
    from taming.scene import layout_dataset

    config = OmegaConf.load(shared_dir / "compat" / "configs" / "coco_scene_images_transformer.yaml")
    ds = layout_dataset(config, data_path=str(shared_dir / "data" / "coco_annotations_100"))
    assert len(ds) == 92 and "image" not in ds.keys and ds[0]["objects_bbox"].shape == (92,)
    config.data.params.validation = {"target": "taming.data.landscapes.LandscapesValidation", "params": {}}
    with pytest.raises(ConfigError, match="holds no object layouts"):
        layout_dataset(config)
    with pytest.raises(ConfigError, match="no data.params.test dataset"):
        layout_dataset(config, "test")
