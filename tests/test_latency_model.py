"""The MCU latency model: stored fit reproduces the published board latencies, errors are honest."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from search import latency_model as lm
from search.errors import MeasurementError
from search.tflite_graph import parse_tflite


@pytest.fixture(scope="module")
def rows(mlperf_dir: Path) -> list[lm.CalibrationRow]:
    found = lm.calibration_rows()
    if not found:
        pytest.skip(f"calibration file not found at {lm.CALIBRATION_CSV}")
    return found


def test_calibration_rows_are_read_and_classified(rows: list[lm.CalibrationRow], tmp_path: Path) -> None:
    assert len(rows) == 19
    assert sum(r.fitted for r in rows) == 14  # tflm-2.3.1 (4) and reference-kernel (1) rows excluded
    assert {r.core_class for r in rows} == {"cortex-m4", "cortex-m33", "helium", "cortex-m7"}
    assert lm.calibration_rows(tmp_path / "missing.csv") == []


def test_stored_coefficients_fit_the_rows(rows: list[lm.CalibrationRow]) -> None:
    graphs = lm.calibration_graphs(rows)
    errors = lm.row_errors(rows, lm.COEFFICIENTS, graphs)
    medians = lm.median_abs_error(errors)
    assert medians["overall"] < 20
    assert all(medians[c] < 20 for c in ("cortex-m4", "cortex-m33", "cortex-m7", "helium"))
    for r, est, err in errors:
        assert est is not None and err is not None
        if r.engine == "microtvm+cmsis-nn":
            assert abs(err) < 10, (r.model, r.board, err)
        if r.engine.startswith("tflm-2.3.1"):
            assert est < r.latency_ms  # current TFLM is faster than the old one


def test_refit_reproduces_stored_constants(rows: list[lm.CalibrationRow]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted, _ = lm.fit_coefficients(rows)
    for cls, stored in lm.COEFFICIENTS.items():
        for field in stored.__dataclass_fields__:
            assert getattr(fitted[cls], field) == pytest.approx(getattr(stored, field), rel=0.01), (cls, field)


@pytest.mark.slow
def test_stated_errors_are_the_leave_one_out_medians(rows: list[lm.CalibrationRow]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        medians = lm.median_abs_error(lm.leave_one_out_errors(rows))
    for cls, stated in lm.ERROR_PCT.items():
        assert medians[cls] == pytest.approx(stated, abs=0.2)
    assert medians["overall"] == pytest.approx(lm.OVERALL_ERROR_PCT, abs=0.2)


def test_estimates_scale_and_label(mlperf_dir: Path) -> None:
    kws = parse_tflite((mlperf_dir / "kws_ref_model.tflite").read_bytes())
    at120 = lm.estimate_mcu_latency(kws, "cortex-m4", 120)
    assert at120.kind == "estimated" and at120.unit == "ms"
    assert at120.value == pytest.approx(99.8, rel=0.1)  # the microTVM+CMSIS-NN L4R5 row
    assert at120.error_pct == lm.ERROR_PCT["cortex-m4"]
    assert lm.estimate_mcu_latency(kws, "Cortex-M4", 240).value == pytest.approx(at120.value / 2, rel=1e-3)
    m85 = lm.estimate_mcu_latency(kws, "cortex-m85", 480)
    assert m85.value < at120.value / 10
    assert lm.estimate_mcu_latency(kws, "cortex-m55", 480).value == m85.value
    esp = lm.estimate_mcu_latency(kws, "xtensa-lx7", 240)
    assert esp.error_pct == lm.XTENSA_ERROR_PCT and "assumption" in esp.method


def test_float_models_cost_reference_kernels(mlperf_dir: Path) -> None:
    f32 = lm.estimate_mcu_latency(parse_tflite((mlperf_dir / "vww_96_float.tflite").read_bytes()), "cortex-m7", 480)
    i8 = lm.estimate_mcu_latency(parse_tflite((mlperf_dir / "vww_96_int8.tflite").read_bytes()), "cortex-m7", 480)
    assert f32.value > 8 * i8.value
    assert f32.error_pct == lm.FLOAT_ERROR_PCT and "reference kernels" in f32.method


def test_unknown_core_and_bad_clock(mlperf_dir: Path) -> None:
    g = parse_tflite((mlperf_dir / "ad01_int8.tflite").read_bytes())
    with pytest.raises(MeasurementError, match="known cores: .*cortex-m33"):
        lm.estimate_mcu_latency(g, "riscv-e907", 100)
    with pytest.raises(MeasurementError, match="clock_mhz must be > 0"):
        lm.estimate_mcu_latency(g, "cortex-m4", 0)
