"""Shared fixtures. Heavy ones (trained models) live next to the tests that need them."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
MLPERF = SHARED / "models" / "mlperf-tiny"
TFLM_CMSIS = SHARED / "tflm" / "cmsis_nn"


def device_runner_missing() -> str | None:
    """Why the device runner cannot run here (no CMSIS-NN tree, compiler or QEMU), or None."""
    if not (TFLM_CMSIS / "third_party" / "cmsis_nn" / "Include").is_dir():
        return f"CMSIS-NN TFLite Micro tree not found at {TFLM_CMSIS}"
    for tool in ("make", "arm-none-eabi-g++", "qemu-system-arm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@pytest.fixture(autouse=True)
def _no_inherited_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``TINYFRONT_STORAGE`` in the shell that runs the suite is every storage-less command's
    storage: tests never write to it, and a test that wants one sets it."""
    monkeypatch.delenv("TINYFRONT_STORAGE", raising=False)


@pytest.fixture(autouse=True)
def _no_pruned_weights_from_earlier_tests() -> None:
    """Pruned weights a test's candidates kept (``search.training.keep_pruned``) stay with that test:
    another test's candidate of the same base and sparsity prunes for itself."""
    training = sys.modules.get("search.training")
    if training is not None:
        training._PRUNED_WEIGHTS.clear()


@pytest.fixture(scope="session")
def mlperf_dir() -> Path:
    if not MLPERF.is_dir():
        pytest.skip(f"MLPerf Tiny models not found at {MLPERF}")
    return MLPERF
