"""Shared test fixtures: where the reference data lives, and deterministic CPU settings."""
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
COMPAT = SHARED / "compat"
FIXTURES = COMPAT / "fixtures"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"reference data expected at {SHARED}"
    return SHARED
