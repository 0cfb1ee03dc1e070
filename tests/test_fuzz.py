"""Property tests (hypothesis) for the three loaders users feed: targets files, datasets and .tflite graphs.

Each property: whatever the input, the loader returns a result that satisfies its invariants or
raises one tinyfront error (a ``TinyfrontError``); never another exception, never a crash. The
generators and the outcome classifier are ``benchmarks/fuzz_loaders.py``'s (that script runs a
larger budget). Derandomised (fixed examples every run), no example database, small budgets: the
file runs in under two minutes on 2 busy cores. The .tflite cases run in a child process, so a
crash fails the test instead of killing pytest.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

REPO = Path(__file__).resolve().parents[1]


def _load_fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_loaders", REPO / "benchmarks" / "fuzz_loaders.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_loaders"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


FUZZ = _load_fuzz()


def fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def assert_clean(outcome: Any) -> None:
    assert outcome.kind in ("valid", "clean"), f"{outcome.kind}: {outcome.detail}"


# ------------------------------------------------------------------------------------------ targets.toml

toml_values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
    st.lists(st.integers(-3, 3), max_size=3),
    st.sampled_from(FUZZ.VALUE_POOL),
)
top_keys = st.sampled_from([*FUZZ.TARGET_FIELDS, "host_scale", "unknown_key"])
budget_keys = st.sampled_from([*FUZZ.BUDGET_FIELDS, "unknown_key"])


@fuzz_settings(100)
@given(
    changes=st.dictionaries(top_keys, toml_values, max_size=3),
    budget_changes=st.dictionaries(budget_keys, toml_values, max_size=2),
    dropped=st.sets(st.sampled_from([*FUZZ.TARGET_FIELDS, *FUZZ.BUDGET_FIELDS]), max_size=1),
)
def test_targets_file_with_random_values(
    tmp_path: Path, changes: dict[str, Any], budget_changes: dict[str, Any], dropped: set[str]
) -> None:
    fields = {k: v for k, v in {**FUZZ.TARGET_FIELDS, **changes}.items() if k not in dropped}
    budget = {k: v for k, v in {**FUZZ.BUDGET_FIELDS, **budget_changes}.items() if k not in dropped}
    outcome = FUZZ.run_targets_case(FUZZ.render_targets(fields, budget).encode(), tmp_path)
    assert_clean(outcome)  # nan / inf budgets, clocks and sizes must be rejected (issue 10 item 4)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400], ids=["nan", "inf", "-inf", "1e400"])
@pytest.mark.parametrize("key", ["clock_mhz", "flash_kb", "sram_kb", "budget.app_flash_kb", "budget.latency_ms"])
def test_targets_file_rejects_non_finite_numbers(tmp_path: Path, key: str, value: float) -> None:
    # What the property above finds first; the fix is issue 10 item 4 (search/targets.py).
    fields, budget = dict(FUZZ.TARGET_FIELDS), dict(FUZZ.BUDGET_FIELDS)
    (budget if key.startswith("budget.") else fields)[key.removeprefix("budget.")] = value
    outcome = FUZZ.run_targets_case(FUZZ.render_targets(fields, budget).encode(), tmp_path)
    assert outcome.kind == "clean" and key.removeprefix("budget.") in outcome.detail, outcome


@fuzz_settings(60)
@given(changes=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6))
def test_targets_file_with_mangled_bytes(tmp_path: Path, changes: list[tuple[int, int]]) -> None:
    text = bytearray(FUZZ.render_targets(FUZZ.TARGET_FIELDS, FUZZ.BUDGET_FIELDS).encode())
    for offset, value in changes:
        text[offset % len(text)] = value  # invalid UTF-8 included (issue 10 item 4)
    assert_clean(FUZZ.run_targets_case(bytes(text), tmp_path))


# ------------------------------------------------------------------------------------------ datasets

image_dtypes = st.sampled_from(["uint8", "uint16", "int16", "int64", "float16", "float32", "float64", "bool", "<U2"])
label_dtypes = st.sampled_from(["uint8", "int32", "int64", "uint64", "float32", "float64", "bool"])


@fuzz_settings(150)
@given(
    x=hnp.arrays(image_dtypes, hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=9)),
    y=hnp.arrays(label_dtypes, hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=40)),
)
def test_npz_with_random_arrays(tmp_path: Path, x: np.ndarray, y: np.ndarray) -> None:
    from search.data import load_npz

    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    assert_clean(FUZZ.classify(lambda: load_npz(path), FUZZ.check_dataset))


@fuzz_settings(150)
@given(seed=st.integers(0, 2**32 - 1))
def test_npz_generated_and_mutated(tmp_path: Path, seed: int) -> None:
    assert_clean(FUZZ.run_npz_case(np.random.default_rng(seed), tmp_path))


@fuzz_settings(50)
@given(seed=st.integers(0, 2**32 - 1))
def test_image_folder_generated_and_broken(tmp_path: Path, seed: int) -> None:
    outcome = FUZZ.run_image_case(np.random.default_rng(seed), Path(tempfile.mkdtemp(dir=tmp_path)))
    assert_clean(outcome)


@fuzz_settings(50)
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".png", ".jpg", ".jpeg", ".bmp"]))
def test_image_folder_with_one_arbitrary_file(tmp_path: Path, data: bytes, suffix: str) -> None:
    from search.data import load_image_folder

    root = Path(tempfile.mkdtemp(dir=tmp_path))
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(6):
            (root / f"c{c}" / f"{i}.png").write_bytes(FUZZ._valid_png(rng, c))
    (root / "c1" / f"odd{suffix}").write_bytes(data)
    outcome = FUZZ.classify(lambda: load_image_folder(root, image_size=(8, 8)), FUZZ.check_dataset)
    assert_clean(outcome)


# ------------------------------------------------------------------------------------------ .tflite


@functools.cache
def _base(folder: Path, name: str) -> bytes:
    return (folder / name).read_bytes()


def _measure_in_child(model: bytes) -> None:
    (outcome,) = FUZZ.run_tflite_cases([model])
    assert outcome.kind in ("valid", "clean"), f"{outcome.kind}: {outcome.detail}"


@fuzz_settings(6)
@given(
    base=st.sampled_from(FUZZ.TFLITE_BASES),
    changes=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_tflite_with_mutated_bytes(mlperf_dir: Path, base: str, changes: list[tuple[int, int]]) -> None:
    _measure_in_child(FUZZ.byte_mutated(_base(mlperf_dir, base), changes))


@fuzz_settings(8)
@given(
    base=st.sampled_from(FUZZ.TFLITE_BASES),
    edits=st.lists(
        st.tuples(st.sampled_from(sorted(FUZZ.FIELD_EDITS)), st.integers(0, 2**31 - 1)), min_size=1, max_size=2
    ),
)
def test_tflite_with_mutated_fields(mlperf_dir: Path, base: str, edits: list[tuple[str, int]]) -> None:
    _measure_in_child(FUZZ.field_mutated(_base(mlperf_dir, base), edits))
