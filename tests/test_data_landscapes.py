"""The built-in procedural landscapes: determinism, shapes, aspect ratios, one-hot, class coverage."""
import numpy as np
import pytest

from taming.data.errors import DataError
from taming.data.landscapes import (CLASSES, GRASS, N_LABELS, SKY, SNOW, MOUNTAIN, TREE, LandscapesTrain,
                                    LandscapesValidation, ProceduralLandscapes)


def test_same_seed_same_sample_different_index_different():
    a, b = ProceduralLandscapes(size=64, seed=3), ProceduralLandscapes(size=64, seed=3)
    x, y = a[5], b[5]
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["segmentation"], y["segmentation"])
    assert not np.array_equal(a[5]["image"], a[6]["image"])
    assert not np.array_equal(a[5]["image"], ProceduralLandscapes(size=64, seed=4)[5]["image"])
    train, val = LandscapesTrain(size=64), LandscapesValidation(size=64)
    assert not np.array_equal(train[0]["image"], val[0]["image"])  # disjoint streams
    assert train[0]["file_path_"] == "landscape://train/0/0"


@pytest.mark.parametrize("height,width", [(64, 64), (48, 128), (96, 40)])
def test_shapes_ranges_one_hot(height, width):
    data = ProceduralLandscapes(size=999, height=height, width=width, length=4)
    for i in range(4):
        example = data[i]
        image, seg = example["image"], example["segmentation"]
        assert image.shape == (height, width, 3) and image.dtype == np.float32
        assert -1.0 <= image.min() and image.max() <= 1.0
        assert seg.shape == (height, width, N_LABELS) and seg.dtype == np.float32
        assert np.all(seg.sum(-1) == 1.0) and set(np.unique(seg)) <= {0.0, 1.0}
        # images are 8-bit quantized like decoded photos: x = k / 127.5 - 1
        k = (image + 1) * 127.5
        np.testing.assert_allclose(k, np.round(k), atol=1e-4)


def test_class_coverage_and_plausible_colours():
    data = ProceduralLandscapes(size=64, length=40, seed=0)
    counts = np.zeros(N_LABELS)
    colour_sums = np.zeros((N_LABELS, 3))
    for i in range(len(data)):
        rgb, labels = data.render(i)
        assert labels[0].min() <= 1  # the top row is sky or cloud
        assert len(np.unique(labels)) >= 3
        for c in range(N_LABELS):
            mask = labels == c
            counts[c] += mask.sum()
            colour_sums[c] += rgb[mask].sum(0)
    assert np.all(counts > 0), dict(zip(CLASSES, counts))
    mean = colour_sums / counts[:, None]
    assert mean[GRASS, 1] > mean[GRASS, 0] and mean[GRASS, 1] > mean[GRASS, 2]  # green grass
    assert mean[TREE, 1] > mean[TREE, 0] and mean[TREE].sum() < mean[GRASS].sum()  # darker green trees
    assert mean[SKY, 2] > mean[SKY, 0]  # blue sky on average
    assert mean[SNOW].sum() > mean[MOUNTAIN].sum()  # snow brighter than rock faces
    assert counts[SKY] / counts.sum() > 0.15 and counts[GRASS] / counts.sum() > 0.1


def test_bad_arguments():
    with pytest.raises(DataError, match="split"):
        ProceduralLandscapes(split="tests")
    with pytest.raises(DataError, match="height, width >= 8"):
        ProceduralLandscapes(size=4)
    with pytest.raises(IndexError):
        ProceduralLandscapes(size=16, length=2)[2]
