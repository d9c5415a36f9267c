"""Shared test fixtures: where the reference data lives, and deterministic CPU settings."""
from pathlib import Path

import pytest
import torch

from helpers import SHARED


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _fresh_allow_list(monkeypatch):
    """Each test is a new command: its own $TAMING_ALLOW_IMPORTS (none unless it sets one), read afresh."""
    from taming.config import reset_allow_list

    monkeypatch.delenv("TAMING_ALLOW_IMPORTS", raising=False)
    reset_allow_list()
    yield
    reset_allow_list()


@pytest.fixture
def one_thread():
    """Tiny models: one thread avoids OpenMP hand-offs that cost more than the work (and thrash on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"reference data expected at {SHARED}"
    return SHARED


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Every device present: a GPU machine runs these tests on CUDA too (benchmarks/gpu_check.sh)."""
    return request.param


@pytest.fixture(autouse=True)
def _no_weight_downloads(tmp_path_factory, monkeypatch):
    """Every test sees an empty `taming weights` cache (not the user's) and no opt-in to downloads."""
    monkeypatch.setenv("TAMING_WEIGHTS_DIR", str(tmp_path_factory.getbasetemp() / "empty-weights-cache"))
    monkeypatch.delenv("TAMING_FETCH_WEIGHTS", raising=False)
