"""File-backed datasets on tiny temp folders (and the real S-FLCKR / D-RIN examples in ../shared)."""
import io
import json
import logging

import numpy as np
import pytest
from PIL import Image

from helpers import SHARED
from taming.config import instantiate_from_config, load_config
from taming.data.base import skip_summaries
from taming.data.custom import CustomTest, CustomTrain, ImageFolder
from taming.data.errors import DataError
from taming.data.imageio import depth_to_rgba

SPLITS = SHARED / "data" / "splits"


def photo(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, np.full((h, w), 90)], -1)
    return np.clip(base + rng.integers(-10, 10, (h, w, 3)), 0, 255).astype(np.uint8)


def make_mixed_folder(folder):
    """Good and bad files of every kind; returns (good names, bad names)."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo()).save(folder / "good.png")
    Image.fromarray(photo(seed=1)).save(folder / "good.jpg")
    Image.fromarray(photo()[..., 0], mode="L").save(folder / "gray.png")
    rgba = np.concatenate([photo(), np.full((48, 64, 1), 100, np.uint8)], -1)
    Image.fromarray(rgba, mode="RGBA").save(folder / "rgba.png")
    Image.fromarray((photo()[..., 0].astype(np.uint16) * 257)).save(folder / "wide16.png")
    Image.fromarray(photo()).convert("P", palette=Image.ADAPTIVE).save(folder / "palette.png")
    Image.fromarray(photo(10, 12)).save(folder / "small.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 3)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    (folder / "truncated.png").write_bytes(buffer.getvalue()[:300])
    good = ["good.png", "good.jpg", "gray.png", "rgba.png", "wide16.png", "palette.png", "small.png"]
    bad = ["empty.png", "text.png", "corrupt.jpg", "truncated.png"]
    return good, bad


def test_custom_train_skips_bad_files_and_logs_names(tmp_path, caplog):
    good, bad = make_mixed_folder(tmp_path / "imgs")
    listed = [str(tmp_path / "imgs" / n) for n in sorted(good + bad)] + [str(tmp_path / "imgs" / "missing.png")]
    (tmp_path / "train.txt").write_text("\n".join(listed) + "\n")
    with caplog.at_level(logging.WARNING, logger="taming.data"):
        data = CustomTrain(size=32, training_images_list_file=str(tmp_path / "train.txt"))
        assert len(data) == len(good) + len(bad)  # the missing file is dropped at construction
        served = [data[i]["file_path_"] for i in range(len(data))]
    skips = data.data.skips
    assert skips.missing == [str(tmp_path / "imgs" / "missing.png")]
    assert sorted(map(lambda p: p.rsplit("/", 1)[1], skips.unreadable)) == sorted(bad)
    assert set(p.rsplit("/", 1)[1] for p in served) == set(good)  # bad indices served good neighbours
    assert [p.rsplit("/", 1)[1] for p in skips.upscaled] == ["small.png"]
    for name in bad + ["missing.png", "small.png"]:
        assert name in caplog.text
    assert "4 unreadable" in skips.summary() and "1 missing" in skips.summary()
    assert skip_summaries(data) == [skips.summary()]  # found through the CustomTrain wrapper
    example = data[0]
    assert example["image"].shape == (32, 32, 3) and example["image"].dtype == np.float32
    assert -1.0 <= example["image"].min() and example["image"].max() <= 1.0


def test_all_bad_stops_at_construction(tmp_path):
    _, bad = make_mixed_folder(tmp_path / "imgs")
    (tmp_path / "bad.txt").write_text("\n".join(str(tmp_path / "imgs" / n) for n in bad))
    with pytest.raises(DataError, match="none of the 4 files can be read"):
        CustomTest(size=32, test_images_list_file=str(tmp_path / "bad.txt"))
    (tmp_path / "none.txt").write_text("nope/a.png\nnope/b.png\n")
    with pytest.raises(DataError, match="none of the 2 listed files exist"):
        CustomTrain(size=32, training_images_list_file=str(tmp_path / "none.txt"))
    with pytest.raises(DataError, match="image list file not found"):
        CustomTrain(size=32, training_images_list_file=str(tmp_path / "absent.txt"))
    with pytest.raises(DataError, match="image folder not found"):
        ImageFolder(str(tmp_path / "imgs" / "absent_dir"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="no image files"):
        ImageFolder(str(tmp_path / "empty_dir"))


def test_custom_test_is_centre_crop_and_deterministic(tmp_path):
    Image.fromarray(photo(48, 64)).save(tmp_path / "a.png")
    (tmp_path / "t.txt").write_text("a.png\n")
    data = CustomTest(size=32, test_images_list_file=str(tmp_path / "t.txt"), root=str(tmp_path))
    a, b = data[0]["image"], data[0]["image"]
    np.testing.assert_array_equal(a, b)
    assert a.shape == (32, 32, 3)


def test_custom_vqgan_config_builds(tmp_path):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    (tmp_path / "train.txt").write_text(str(tmp_path / "a.png"))
    config = load_config(SHARED / "compat" / "configs" / "custom_vqgan.yaml",
                         overrides=[f"data.params.train.params.training_images_list_file={tmp_path / 'train.txt'}"])
    data = instantiate_from_config(config.data.params.train)
    assert data[0]["image"].shape == (256, 256, 3)


def test_image_folder_recursive_and_slices(tmp_path):
    for k, sub in enumerate(["a", "b/c", "b/d"]):
        (tmp_path / sub).mkdir(parents=True)
        Image.fromarray(photo(seed=k)).save(tmp_path / sub / f"{k}.png")
    (tmp_path / "b" / "notes.txt").write_text("ignored")
    train = ImageFolder(str(tmp_path), size=24, stop=2)
    val = ImageFolder(str(tmp_path), size=24, split="validation", start=2)
    assert len(train) == 2 and len(val) == 1
    assert val[0]["file_path_"].endswith("b/d/2.png") and val[0]["image"].shape == (24, 24, 3)


# ---------------------------------------------------------------- faces
def ffhq_folder(tmp_path, names, official):
    root = tmp_path / "ffhq"
    for k, name in enumerate(names):
        folder = root / (f"{int(name[:5]) // 1000 * 1000:05d}" if official else "")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(40, 40, seed=k)).save(folder / name)
    return root


@pytest.mark.parametrize("official", [False, True])
def test_ffhq_split_lists_flat_and_official(tmp_path, official):
    from taming.data.faceshq import FFHQTrain, FFHQValidation
    train_names = (SPLITS / "ffhqtrain.txt").read_text().split()[:3]
    val_names = (SPLITS / "ffhqvalidation.txt").read_text().split()[:2]
    root = ffhq_folder(tmp_path, train_names + val_names, official)
    # a split list naming 3 present + 1 absent files: the absent one is dropped, the rest served in order
    (tmp_path / "train.txt").write_text("\n".join(train_names + ["99999.png"]))
    train = FFHQTrain(size=32, root=str(root), split_file=str(tmp_path / "train.txt"))
    assert len(train) == 3 and train.data.skips.missing[0].endswith("99999.png")
    assert [train[i]["file_path_"].rsplit("/", 1)[1] for i in range(3)] == train_names
    if official:
        assert f"/{int(train_names[0][:5]) // 1000 * 1000:05d}/" in train[0]["file_path_"]
    # the official validation list (10000 names, 2 present here) read in place from ../shared
    val = FFHQValidation(size=32, root=str(root), split_file=str(SPLITS / "ffhqvalidation.txt"))
    assert len(val) == 2 and val.data.skips.missing and len(val.data.skips.missing) == 9998
    assert val[0]["image"].shape == (32, 32, 3)


def test_split_lists_ship_and_a_missing_one_is_clear(tmp_path):
    from taming.data.faceshq import FFHQTrain
    with pytest.raises(DataError, match="ffhqtrain.txt not found; looked at .*mine.txt"):
        FFHQTrain(size=32, root=str(tmp_path), split_file=str(tmp_path / "mine.txt"))
    with pytest.raises(DataError, match=f"none of the 60000 listed files exist; looked in {tmp_path}.*taming/data/splits"):
        FFHQTrain(size=32, root=str(tmp_path))  # the official list ships with taming: no file to fetch


def make_faces(tmp_path):
    celeb = tmp_path / "celebahq"
    celeb.mkdir()
    names = (SPLITS / "celebahqtrain.txt").read_text().split()[:2]
    for k, name in enumerate(names):
        np.save(celeb / name, photo(40, 40, seed=k).transpose(2, 0, 1)[None])  # (1, 3, H, W) uint8
    (celeb / "broken.npy").write_bytes(b"not numpy")
    (tmp_path / "celeb.txt").write_text("\n".join(names + ["broken.npy"]))
    ffhq_names = (SPLITS / "ffhqtrain.txt").read_text().split()[:3]
    root = ffhq_folder(tmp_path, ffhq_names, official=True)
    (tmp_path / "ffhq.txt").write_text("\n".join(ffhq_names))
    return celeb, root, names


def test_celebahq_npy(tmp_path):
    from taming.data.faceshq import CelebAHQTrain
    celeb, _, names = make_faces(tmp_path)
    data = CelebAHQTrain(size=24, root=str(celeb), split_file=str(tmp_path / "celeb.txt"))
    example = data[0]
    assert example["image"].shape == (24, 24, 3)
    full = CelebAHQTrain(size=40, root=str(celeb), split_file=str(tmp_path / "celeb.txt"))[1]["image"]
    np.testing.assert_allclose(full, photo(40, 40, seed=1) / 127.5 - 1, atol=1e-6)  # same size: exact
    assert full.dtype == np.float32
    data[2]  # the broken .npy is skipped (served from index 0)
    assert list(data.data.skips.unreadable) == [str(celeb / "broken.npy")]


def test_faceshq_labels_crop_coord(tmp_path):
    from taming.data.faceshq import FacesHQTrain, FacesHQValidation
    celeb, ffhq, _ = make_faces(tmp_path)
    kw = dict(celebahq_root=str(celeb), ffhq_root=str(ffhq), celebahq_split_file=str(tmp_path / "celeb.txt"),
              ffhq_split_file=str(tmp_path / "ffhq.txt"))
    train = FacesHQTrain(size=32, crop_size=16, coord=True, **kw)
    assert len(train) == 3 + 3
    assert [train[i]["class"] for i in range(6)] == [0, 0, 0, 1, 1, 1]
    example = train[4]
    assert example["class_label"] == 1 and example["image"].shape == (16, 16, 3)
    coord = example["coord"]
    assert coord.shape == (16, 16, 1) and 0 <= coord.min() and coord.max() < 1
    # a crop of the 32x32 raster-position map: rows step by 32/1024, columns by 1/1024
    np.testing.assert_allclose(np.diff(coord[:, 0, 0]), 32 / 1024, atol=1e-6)
    np.testing.assert_allclose(np.diff(coord[0, :, 0]), 1 / 1024, atol=1e-6)
    val = FacesHQValidation(size=32, crop_size=16, coord=True, **kw)
    top_left = val[0]["coord"][0, 0, 0]
    np.testing.assert_allclose(top_left, (8 * 32 + 8) / 1024, atol=1e-6)  # centre window starts at (8, 8)


# ---------------------------------------------------------------- segmentation
def test_sflckr_real_examples(shared_dir):
    from taming.data.sflckr import Examples
    data = Examples(size=64, root=str(shared_dir / "data" / "sflckr"))
    assert len(data) == 25
    labels_seen = set()
    for i in (0, 7, 24):
        example = data[i]
        seg = example["segmentation"]
        assert example["image"].shape == (64, 64, 3) and seg.shape == (64, 64, 182)
        assert seg.dtype == np.float32 and np.all(seg.sum(-1) == 1.0) and set(np.unique(seg)) <= {0.0, 1.0}
        raw = np.asarray(Image.open(example["segmentation_path_"]))
        labels = seg.argmax(-1)
        assert set(np.unique(labels)) <= set(np.unique(raw))  # nearest resize invents no class
        labels_seen |= set(np.unique(labels).tolist())
        assert -1 <= example["image"].min() and example["image"].max() <= 1
    assert max(labels_seen) < 182 and len(labels_seen) >= 3


def test_sflckr_config_target(shared_dir):
    config = load_config(SHARED / "compat" / "configs" / "sflckr_cond_stage.yaml",
                         overrides=[f"data.params.train.params.root={shared_dir / 'data' / 'sflckr'}",
                                    "data.params.train.params.size=32"])
    data = instantiate_from_config(config.data.params.train)
    assert data[0]["segmentation"].shape == (32, 32, 182)


def label_pair(folder, rel, labels, seed=0):
    (folder / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
    (folder / "annotations" / rel).parent.mkdir(parents=True, exist_ok=True)
    h, w = labels.shape
    Image.fromarray(photo(h, w, seed)).save(folder / "images" / rel)
    Image.fromarray(labels.astype(np.uint8), mode="L").save((folder / "annotations" / rel).with_suffix(".png"))


def test_ade20k_layout(tmp_path):
    from taming.data.ade20k import ADE20kTrain, ADE20kValidation
    root = tmp_path / "ade"
    labels = np.zeros((30, 40), np.uint8)
    labels[:, 20:] = 150  # the largest ADE class
    label_pair(root, "training/ADE_train_00000001.jpg", labels)
    label_pair(root, "training/ADE_train_00000002.jpg", labels, seed=1)
    label_pair(root, "validation/ADE_val_00000001.jpg", labels)
    (root / "sceneCategories.txt").write_text("ADE_train_00000001 beach\nADE_train_00000002 forest\n")
    train = ADE20kTrain(size=20, root=str(root), data_csv=str(tmp_path / "no_list.txt"))
    assert len(train) == 2 and train[1]["scene_category"] == "forest"
    seg = train[0]["segmentation"]
    assert seg.shape == (20, 20, 151) and np.all(seg.sum(-1) == 1)
    val = ADE20kValidation(size=20, root=str(root), data_csv=str(tmp_path / "no_list.txt"))
    row = val[0]["segmentation"].argmax(-1)[0]  # centre crop of the 20x27 resize (columns 3..22)
    boundary = int(np.argmax(row == 150))  # source column 20 of 40 lands at resized ~13.3 -> crop ~10.3
    assert boundary in (10, 11) and set(row[:boundary]) == {0} and set(row[boundary:]) == {150}


def test_ade20k_examples_read_the_example_list(tmp_path, monkeypatch):
    """The original's ade20k.Examples: data/ade20k_examples.txt, images and .png label maps beside it."""
    from taming.data.ade20k import Examples
    labels = np.zeros((24, 32), np.uint8)
    labels[12:] = 150
    for i, rel in enumerate(["a/one.jpg", "two.jpg"]):
        for sub, suffix in (("ade20k_images", ".jpg"), ("ade20k_segmentations", ".png")):
            (tmp_path / "data" / sub / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(24, 32, i)).save(tmp_path / "data" / "ade20k_images" / rel)
        Image.fromarray(labels, mode="L").save((tmp_path / "data" / "ade20k_segmentations" / rel).with_suffix(".png"))
    (tmp_path / "data" / "ade20k_examples.txt").write_text("a/one.jpg\ntwo.jpg\n")
    monkeypatch.chdir(tmp_path)  # the original's default paths are relative to the working folder
    data = Examples(size=16)
    assert len(data) == 2 and data[1]["relative_file_path_"] == "two.jpg"
    seg = data[0]["segmentation"]
    assert data[0]["image"].shape == (16, 16, 3) and seg.shape == (16, 16, 151) and np.all(seg.sum(-1) == 1)
    assert set(np.unique(seg.argmax(-1))) == {0, 150}  # labels kept as they are: no shift
    assert instantiate_from_config({"target": "taming.data.ade20k.Examples", "params": {"size": 16}}).__len__() == 2


def test_segmentation_label_out_of_range_is_an_error(tmp_path):
    from taming.data.segmentation import SegmentationBase
    labels = np.full((16, 16), 9, np.uint8)
    label_pair(tmp_path, "x/a.jpg", labels)
    (tmp_path / "list.txt").write_text("x/a.jpg\n")
    with pytest.raises(DataError, match="label value 9 >= n_labels=5"):
        SegmentationBase(str(tmp_path / "list.txt"), str(tmp_path / "images"), str(tmp_path / "annotations"),
                         size=16, n_labels=5)


def test_coco_stuffthing_onehot_shift(tmp_path):
    from taming.data.coco import CocoImagesAndCaptionsTrain, CocoImagesAndCaptionsValidation
    for split in ("train", "val"):
        (tmp_path / "coco" / f"{split}2017").mkdir(parents=True)
        (tmp_path / "cocostuffthings" / f"{split}2017").mkdir(parents=True)
        (tmp_path / "coco" / "annotations").mkdir(exist_ok=True)
        labels = np.zeros((24, 32), np.uint8)
        labels[:, :16] = 255  # unlabeled
        labels[:, 16:] = 181  # the last stuff class
        Image.fromarray(photo(24, 32)).save(tmp_path / "coco" / f"{split}2017" / "000000000001.jpg")
        Image.fromarray(labels, mode="L").save(tmp_path / "cocostuffthings" / f"{split}2017" / "000000000001.png")
        notes = {"images": [{"id": 1, "file_name": "000000000001.jpg"}],
                 "annotations": [{"image_id": 1, "caption": "a test"}, {"image_id": 1, "caption": "a test"}]}
        (tmp_path / "coco" / "annotations" / f"captions_{split}2017.json").write_text(json.dumps(notes))
    kw = dict(onehot_segmentation=True, use_stuffthing=True, root=str(tmp_path))
    train = CocoImagesAndCaptionsTrain(size=24, crop_size=16, **kw)
    example = train[0]
    assert example["image"].shape == (16, 16, 3) and example["segmentation"].shape == (16, 16, 183)
    assert example["caption"] == ["a test"]
    val = CocoImagesAndCaptionsValidation(size=24, crop_size=24, **kw)
    labels = val[0]["segmentation"].argmax(-1)
    # no resize (smaller side is 24), centre 24-wide window starts at column 4: source column 16 -> 12
    np.testing.assert_array_equal(labels[0], [0] * 12 + [182] * 12)  # 255 -> 0, 181 -> 182
    with pytest.raises(DataError, match="use_stuffthing"):
        CocoImagesAndCaptionsTrain(size=24, onehot_segmentation=True, root=str(tmp_path))


# ---------------------------------------------------------------- depth, ImageNet
def test_drin_real_depth_decode(shared_dir):
    from taming.data.drin import DRINExamples
    root = shared_dir / "data" / "drin"
    data = DRINExamples(size=None, root=str(root))
    assert len(data) == 25
    example = data[0]
    rgba = np.asarray(Image.open(example["depth_path_"]))
    assert rgba.shape[2] == 4 and rgba.dtype == np.uint8
    # independent decode: assemble each pixel's little-endian float32 from its four bytes with struct
    import struct
    raw = np.array([[struct.unpack("<f", bytes(px))[0] for px in row] for row in rgba[::37, ::41]], np.float64)
    packed = rgba.copy().view("<f4")[..., 0].astype(np.float64)
    np.testing.assert_array_equal(packed[::37, ::41], raw)
    expected = (packed - packed.min()) / (packed.max() - packed.min()) * 2 - 1
    depth = example["depth"]
    assert depth.shape == rgba.shape[:2] + (1,) and depth.dtype == np.float32
    np.testing.assert_allclose(depth[..., 0], expected, atol=1e-6)
    assert depth.min() == -1.0 and depth.max() == 1.0
    assert np.isfinite(packed).all() and packed.std() > 0
    sized = DRINExamples(size=64, root=str(root), random_crop=True)[3]
    assert sized["image"].shape == (64, 64, 3) and sized["depth"].shape == (64, 64, 1)
    assert -1 <= sized["depth"].min() and sized["depth"].max() <= 1


def imagenet_folder(tmp_path, wnids=("n01440764", "n01443537", "n01484850"), per_class=2):
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for k, wnid in enumerate(wnids):
            (root / split / wnid).mkdir(parents=True)
            for j in range(per_class):
                Image.fromarray(photo(30, 40, seed=k * 10 + j)).save(root / split / wnid / f"{wnid}_{j}.JPEG")
    (root / "synset_human.txt").write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n")
    return root


def test_imagenet_local_layout(tmp_path):
    from taming.data.imagenet import ImageNetTrain, ImageNetValidation
    root = imagenet_folder(tmp_path)
    train = ImageNetTrain(config={"size": 24, "root": str(root)})
    assert len(train) == 6
    labels = [train[i]["class_label"] for i in range(6)]
    assert labels == [0, 0, 1, 1, 2, 2]
    assert train[0]["human_label"] == "tench, Tinca tinca" and train[5]["human_label"] == "n01484850"
    assert train[2]["synsets"] == "n01443537" and train[0]["image"].shape == (24, 24, 3)
    val = ImageNetValidation(config={"size": 24}, data_root=str(root))
    np.testing.assert_array_equal(val[1]["image"], val[1]["image"])  # centre crop: deterministic
    with pytest.raises(DataError, match="index_synset.yaml"):
        ImageNetTrain(config={"size": 24, "root": str(root), "sub_indices": "0-2"})
    (root / "index_synset.yaml").write_text("0: n01440764\n1: n01443537\n2: n01484850\n")
    sub = ImageNetTrain(config={"size": 24, "root": str(root), "sub_indices": "1-3"})
    assert len(sub) == 4 and sub[0]["synsets"] == "n01443537" and sub[0]["class_label"] == 0
    with pytest.raises(DataError, match="ImageNet train folder not found"):
        ImageNetTrain(config={"size": 24, "root": str(tmp_path / "nowhere")})
    with pytest.raises(DataError, match="unknown config keys"):
        ImageNetTrain(config={"sise": 24, "root": str(root)})


def test_imagenet_depth_variant(tmp_path):
    from taming.data.imagenet import ImageNetValidationWithDepth
    root = imagenet_folder(tmp_path, wnids=("n01440764",), per_class=1)
    depth_root = tmp_path / "depth" / "val" / "n01440764"
    depth_root.mkdir(parents=True)
    depth = np.linspace(1, 5, 30 * 40, dtype=np.float32).reshape(30, 40)
    Image.fromarray(depth_to_rgba(depth), mode="RGBA").save(depth_root / "n01440764_0.png")
    data = ImageNetValidationWithDepth(size=20, root=str(tmp_path / "depth"), data_root=str(root))
    example = data[0]
    assert example["depth"].shape == (20, 20, 1) and example["image"].shape == (20, 20, 3)
    # depth rises linearly in raster order: after normalization, row means increase
    assert np.all(np.diff(example["depth"][:, :, 0].mean(1)) > 0)


def test_low_resolution_and_coord_wrappers():
    from taming.data.coord import WithCoord, WithLowResolution, coord_map
    from taming.data.landscapes import ProceduralLandscapes
    base = ProceduralLandscapes(size=32, length=2)
    lr = WithLowResolution(base, downscale_f=4)[1]
    assert lr["LR_image"].shape == (8, 8, 3) and -1 <= lr["LR_image"].min() and lr["LR_image"].max() <= 1
    # box filter = mean of each 4x4 block
    box = WithLowResolution(base, downscale_f=4, degradation="box")[1]
    expected = lr["image"].reshape(8, 4, 8, 4, 3).mean((1, 3))
    np.testing.assert_allclose(box["LR_image"], expected, atol=1e-5)
    assert WithCoord(base)[0]["coord"].shape == (32, 32, 1)
    np.testing.assert_allclose(coord_map(2, 3)[..., 0], [[0, 1 / 6, 2 / 6], [3 / 6, 4 / 6, 5 / 6]])
    with pytest.raises(DataError, match="divide"):
        WithLowResolution(ProceduralLandscapes(size=30, length=1), downscale_f=4)[0]
    built = instantiate_from_config({"target": "taming.data.coord.WithLowResolution", "params": {
        "dataset": {"target": "taming.data.landscapes.LandscapesTrain", "params": {"size": 32, "length": 2}},
        "downscale_f": 4}})
    np.testing.assert_array_equal(built[1]["LR_image"], lr["LR_image"])  # same seed 0 train stream


def test_scene_layout_configs_name_a_missing_data_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the configs' relative data/... paths do not exist here
    for name, missing in (("coco_scene_images_transformer", "data/coco_annotations_100/annotations"),
                          ("open_images_scene_images_transformer", "data/open_images_annotations_100/class-")):
        config = load_config(SHARED / "compat" / "configs" / f"{name}.yaml")
        with pytest.raises(DataError, match=f"{missing}.* does not exist"):
            instantiate_from_config(config.data.params.train)


def test_original_configs_build_with_paths_set(tmp_path):
    """imagenet_vqgan / imagenetdepth_vqgan / faceshq_transformer data nodes, unchanged but for paths."""
    configs = SHARED / "compat" / "configs"
    root = imagenet_folder(tmp_path, wnids=("n01440764",), per_class=1)
    config = load_config(configs / "imagenet_vqgan.yaml", overrides=[
        f"data.params.validation.params.config.root={root}", "data.params.validation.params.config.size=24"])
    assert instantiate_from_config(config.data.params.validation)[0]["image"].shape == (24, 24, 3)
    depth_dir = tmp_path / "depth" / "train" / "n01440764"
    depth_dir.mkdir(parents=True)
    Image.fromarray(depth_to_rgba(np.ones((30, 40), np.float32)), mode="RGBA").save(depth_dir / "n01440764_0.png")
    config = load_config(configs / "imagenetdepth_vqgan.yaml", overrides=[
        f"data.params.train.params.root={tmp_path / 'depth'}", f"data.params.train.params.data_root={root}",
        "data.params.train.params.size=16"])
    example = instantiate_from_config(config.data.params.train)[0]
    assert example["depth"].shape == (16, 16, 1) and np.all(example["depth"] == -1.0)  # flat depth -> min
    celeb, ffhq, _ = make_faces(tmp_path)
    node = "data.params.train.params"
    config = load_config(configs / "faceshq_transformer.yaml", overrides=[
        f"{node}.celebahq_root={celeb}", f"{node}.ffhq_root={ffhq}", f"{node}.size=32", f"{node}.crop_size=32",
        f"{node}.celebahq_split_file={tmp_path / 'celeb.txt'}", f"{node}.ffhq_split_file={tmp_path / 'ffhq.txt'}"])
    example = instantiate_from_config(config.data.params.train)[5]
    assert example["coord"].shape == (32, 32, 1) and example["class"] == 1


def test_image_folder_sflckr_benchmark_split(shared_dir):
    """The S-FLCKR quality recipe: sorted paths, first 20 train (random 64 crops of the 128 resize),
    last 5 validate (top-left 128 crop of the 128 resize)."""
    images = shared_dir / "data" / "sflckr" / "images"
    train = ImageFolder(str(images), size=128, crop_size=64, stop=20)
    val = ImageFolder(str(images), size=128, crop_size=128, split="validation", start=20, crop_anchor="top_left")
    relative = sorted(str(p.relative_to(images)) for p in images.rglob("*.jpg"))
    assert len(train) == 20 and len(val) == 5
    assert val[0]["file_path_"].endswith(relative[20]) and train[0]["image"].shape == (64, 64, 3)
    example = val[4]
    source = Image.open(example["file_path_"]).convert("RGB")
    w, h = source.size
    scale = 128 / min(w, h)
    resized = np.asarray(source.resize((max(128, round(w * scale)), max(128, round(h * scale))), Image.BICUBIC))
    np.testing.assert_allclose(example["image"], resized[:128, :128] / 127.5 - 1, atol=1e-6)
