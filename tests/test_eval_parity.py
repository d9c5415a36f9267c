"""Parity with torch-fidelity 0.4.0 on the evaluation fixture (../shared/compat/fixtures/eval, see its
README): the inputs and seeded Inception weights are rebuilt by the fixture's own script, then features,
FID, KID and IS are compared with the numbers torch-fidelity produced on them."""
import json
import subprocess
import sys

import pytest
import torch

from helpers import FIXTURES, SHARED
from taming.eval import fidelity
from taming.eval.inception import load_inception
from taming.eval.samples import list_images, same_size_batches, sample_metrics

pytestmark = pytest.mark.slow  # real-size Inception on 240 images

EVAL = FIXTURES / "eval"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_fixture")
    subprocess.run([sys.executable, str(EVAL / "make_inputs.py"), str(SHARED), str(out),
                    str(EVAL / "inception_keys.json"), "7", "data/drin/images/*/*"], check=True,
                   capture_output=True)
    return out


@pytest.fixture(scope="module")
def net(rebuilt):
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    yield load_inception(rebuilt / "inception.pth")
    torch.set_num_threads(threads)


def test_rebuilt_images_are_the_fixture_inputs(rebuilt):
    ref = torch.load(EVAL / "features.pt", weights_only=True)
    batch = next(iter(same_size_batches(list_images(rebuilt / "fake")[:4], 4)))
    assert [p.name for p in list_images(rebuilt / "fake")[:4]] == ref["files"]
    assert torch.equal(batch, ref["uint8_input"])


def test_features_match_torch_fidelity(net):
    ref = torch.load(EVAL / "features.pt", weights_only=True)
    with torch.no_grad():
        got = net(ref["uint8_input"])
    for ours, theirs in (("pool_64", "pool_64"), ("pool", "pool_2048"), ("logits_unbiased", "logits_unbiased")):
        err = (got[ours] - ref[theirs]).abs().max() / ref[theirs].abs().max()
        assert err < 1e-4, (ours, float(err))
    assert torch.allclose(got["logits"] - got["logits_unbiased"], net.fc.bias.expand(4, -1))


def test_fid_kid_is_match_torch_fidelity(net, rebuilt):
    # the fixture's call: input1 = fake, input2 = real, one KID subset of all 120, one IS split
    want = json.loads((EVAL / "expected.json").read_text())
    got = sample_metrics(net, rebuilt / "real", rebuilt / "fake", ("fid", "kid", "isc"), batch_size=40,
                         kid_subsets=1, kid_subset_size=120, isc_splits=1)
    assert got[fidelity.FID] == pytest.approx(want[fidelity.FID], rel=1e-3)
    assert got[fidelity.KID_MEAN] == pytest.approx(want[fidelity.KID_MEAN], rel=1e-2)
    assert got[fidelity.ISC_MEAN] == pytest.approx(want[fidelity.ISC_MEAN], abs=2e-4)
    assert got[fidelity.KID_STD] == want[fidelity.KID_STD] == 0.0
    assert got[fidelity.ISC_STD] == want[fidelity.ISC_STD] == 0.0
    assert got["images_real"] == got["images_fake"] == 120
