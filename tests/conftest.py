"""Shared fixtures. Heavy ones (trained models) live next to the tests that need them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
MLPERF = SHARED / "models" / "mlperf-tiny"


@pytest.fixture(scope="session")
def mlperf_dir() -> Path:
    if not MLPERF.is_dir():
        pytest.skip(f"MLPerf Tiny models not found at {MLPERF}")
    return MLPERF
