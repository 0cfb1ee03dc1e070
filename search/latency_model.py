"""Per-layer latency model of TFLite Micro + CMSIS-NN on a microcontroller: an ESTIMATE.

cycles = sum over layers of  MACs / mac_per_cycle[class][kind]
                           + weight_bytes * flash_cycles_per_byte[class]
                           + per_op_overhead_cycles[class]
latency_ms = cycles / (clock_mhz * 1000).  ``kind`` is conv (CONV_2D and TRANSPOSE_CONV, any kernel
size), dw (DEPTHWISE_CONV_2D) or fc (FULLY_CONNECTED); other ops cost only the per-op overhead.

The coefficients below were fitted by :func:`fit_coefficients` (least squares on log error,
``benchmarks/latency_model_error.py`` prints every row and the error) to the published board
measurements in ``../shared/calibration/mcu_latency.csv``:

- cortex-m4 / cortex-m33: the ``microtvm+cmsis-nn`` rows (NUCLEO-L4R5ZI, nRF5340-DK), the best
  available proxy for a current TFLM + CMSIS-NN build. M4 and M33 share one set of relative
  costs; the M33 gets one extra speed factor. The ``tflm-2.3.1`` rows are NOT fitted: that old
  TFLM is 1.2-3.5x slower than current TFLM (see the CSV's README); they are only printed.
- helium (cortex-m55, cortex-m85): the ``tflm+cmsis-nn(helium)`` EK-RA8D1 rows (mac/cycle for
  conv and dw and flash cycles per byte fitted; per-op overhead taken from the M4 fit).
- cortex-m7: the H743 ``tflm+cmsis-nn`` TinyEngine-README rows have no model file, only MAC
  totals. MCUNet models are MobileNet-like, so the M7 class is the M4 class with every
  mac_per_cycle multiplied by one factor fitted so that the MLPerf VWW (MobileNetV1) per-MAC cost
  reproduces those two rows. The reference-kernel H743 row is not fitted.
- xtensa-lx7 (ESP32-S3 + ESP-NN): NO calibration rows. ASSUMPTION: the M33 class with 1.5x its
  mac_per_cycle (ESP-NN's S3 assembly kernels use the 128-bit PIE SIMD unit) and 2x its flash
  cycles per byte (weights come from external QSPI flash through a small cache); the stated error
  (60%) is a guess, not a fit.

Float models: every calibration row is an int8 model run by CMSIS-NN kernels; TFLM runs float32
layers with its portable reference kernels. Their MAC terms are multiplied by
:data:`REFERENCE_KERNEL_SLOWDOWN`, the ratio of the two H743 MCUNet-VWW0 rows (reference kernels
587 ms / CMSIS-NN 53 ms), and the stated error is :data:`FLOAT_ERROR_PCT` (a guess).

``error_pct`` of an estimate is the leave-one-out median absolute % error of the fitted rows of
that class (see :data:`ERROR_PCT`). The rows are 4 MLPerf models per board, and the M4/M33 rows
come from microTVM, not TFLM: expect larger errors on architectures unlike these.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median

from search.errors import MeasurementError
from search.figures import Figure
from search.tflite_graph import GraphInfo, Layer

#: The calibration file beside the repository (read-only, not shipped in the package).
CALIBRATION_CSV = Path(__file__).resolve().parents[2] / "shared" / "calibration" / "mcu_latency.csv"

#: Core name (targets.toml ``core``) -> cost-model class.
CORE_CLASSES: dict[str, str] = {
    "cortex-m4": "cortex-m4",
    "cortex-m4f": "cortex-m4",
    "cortex-m33": "cortex-m33",
    "cortex-m7": "cortex-m7",
    "cortex-m55": "helium",
    "cortex-m85": "helium",
    "xtensa-lx7": "xtensa-lx7",
}

KINDS = ("conv", "dw", "fc")

#: Weight of the log-space priors on flash cost and per-op overhead in the fit.
PRIOR_WEIGHT = 0.1


@dataclass(frozen=True)
class CoreCoefficients:
    """Cost coefficients of one core class."""

    conv_mac_per_cycle: float
    dw_mac_per_cycle: float
    fc_mac_per_cycle: float
    flash_cycles_per_byte: float
    per_op_overhead_cycles: float

    def mac_per_cycle(self, kind: str) -> float:
        return {"conv": self.conv_mac_per_cycle, "dw": self.dw_mac_per_cycle, "fc": self.fc_mac_per_cycle}[kind]


# Fitted by fit_coefficients() on the rows named in the module docstring (rounded; run
# benchmarks/latency_model_error.py to refit and compare with these constants).
COEFFICIENTS: dict[str, CoreCoefficients] = {
    "cortex-m4": CoreCoefficients(0.2604, 0.08950, 0.3803, 1.033, 2936.0),
    "cortex-m33": CoreCoefficients(0.3186, 0.1095, 0.4652, 0.8448, 2936.0),
    "cortex-m7": CoreCoefficients(0.2909, 0.09996, 0.4248, 1.033, 2936.0),
    "helium": CoreCoefficients(3.153, 0.2525, 3.153, 0.5359, 2936.0),
    "xtensa-lx7": CoreCoefficients(0.4779, 0.1642, 0.6978, 1.690, 2936.0),
}
#: Stated error per class: the median absolute % error of the fitted rows when each is predicted
#: by a fit without it (leave-one-out; in-sample errors are 1.5-8% and flatter the model). Helium's
#: is large because its 4 rows barely determine 3 coefficients (without ResNet-8 the conv cost is
#: unconstrained). cortex-m7 rests on 2 MAC-total rows of MobileNet-like models only.
ERROR_PCT: dict[str, float] = {"cortex-m4": 6.4, "cortex-m33": 6.8, "cortex-m7": 3.1, "helium": 67.1}
OVERALL_ERROR_PCT: float = 7.3
XTENSA_ERROR_PCT = 60.0
REFERENCE_KERNEL_SLOWDOWN = 587.0 / 53.0
FLOAT_ERROR_PCT = 100.0


@dataclass(frozen=True)
class CalibrationRow:
    """One published board latency (a row of mcu_latency.csv) and whether it is fitted."""

    model: str
    model_file: str
    macs: int
    core: str
    board: str
    clock_mhz: float
    engine: str
    latency_ms: float
    source: str

    @property
    def core_class(self) -> str:
        return CORE_CLASSES.get(self.core, self.core)

    @property
    def fitted(self) -> bool:
        """True for rows that model a current TFLM + CMSIS-NN build (see the module docstring)."""
        return self.engine in ("microtvm+cmsis-nn", "tflm+cmsis-nn(helium)", "tflm+cmsis-nn")


def calibration_rows(path: str | Path | None = None) -> list[CalibrationRow]:
    """Rows of ``mcu_latency.csv`` (default: ``../shared/calibration/``); empty when it is absent."""
    file = Path(path) if path is not None else CALIBRATION_CSV
    if not file.is_file():
        return []
    with file.open(newline="", encoding="utf-8") as fh:
        return [
            CalibrationRow(
                model=r["model"],
                model_file=r["model_file"],
                macs=int(float(r["macs"])),
                core=r["core"].strip().lower(),
                board=r["board"],
                clock_mhz=float(r["clock_mhz"]),
                engine=r["engine"],
                latency_ms=float(r["latency_ms"]),
                source=r["source"],
            )
            for r in csv.DictReader(fh)
        ]


def op_kind(layer: Layer) -> str | None:
    """``conv``, ``dw``, ``fc`` or None (an op costed by its overhead only)."""
    return {"CONV_2D": "conv", "TRANSPOSE_CONV": "conv", "DEPTHWISE_CONV_2D": "dw", "FULLY_CONNECTED": "fc"}.get(
        layer.op
    )


def is_float_layer(layer: Layer) -> bool:
    """True when a conv/dw/fc layer stores float weights (>= 1.5 bytes per parameter)."""
    return layer.weight_params > 0 and layer.weight_bytes >= 1.5 * layer.weight_params


def estimate_cycles(graph: GraphInfo, coefficients: CoreCoefficients) -> float:
    """Cycles of one inference of ``graph`` under ``coefficients`` (float layers: reference kernels)."""
    cycles = 0.0
    for layer in graph.layers:
        kind = op_kind(layer)
        if kind is not None and layer.macs:
            slowdown = REFERENCE_KERNEL_SLOWDOWN if is_float_layer(layer) else 1.0
            cycles += slowdown * layer.macs / coefficients.mac_per_cycle(kind)
        cycles += layer.weight_bytes * coefficients.flash_cycles_per_byte + coefficients.per_op_overhead_cycles
    return cycles


def core_coefficients(core: str) -> tuple[str, CoreCoefficients]:
    """The class name and coefficients of ``core``; MeasurementError for an unknown core."""
    key = core.strip().lower()
    if key not in CORE_CLASSES:
        raise MeasurementError(f"no latency model for core '{core}'; known cores: {', '.join(sorted(CORE_CLASSES))}")
    cls = CORE_CLASSES[key]
    return cls, COEFFICIENTS[cls]


def estimate_mcu_latency(graph: GraphInfo, core: str, clock_mhz: float) -> Figure:
    """Estimated latency (ms) of one inference with TFLM + CMSIS-NN on ``core`` at ``clock_mhz``."""
    if clock_mhz <= 0:
        raise MeasurementError(f"clock_mhz must be > 0, got {clock_mhz:g}")
    cls, coefficients = core_coefficients(core)
    ms = estimate_cycles(graph, coefficients) / (clock_mhz * 1000.0)
    if cls == "xtensa-lx7":
        method = (
            "per-layer cost model; xtensa-lx7 has no calibration rows: M33 coefficients with 1.5x MAC/cycle "
            "and 2x flash cost (assumption), error is a guess"
        )
        error = XTENSA_ERROR_PCT
    elif cls in ERROR_PCT:
        method = f"per-layer cost model fitted to published {cls} TFLM/CMSIS-NN latencies (leave-one-out error)"
        error = ERROR_PCT[cls]
    else:
        method = f"per-layer cost model; no {cls} error figure, overall leave-one-out error of the fit stated"
        error = OVERALL_ERROR_PCT
    if any(is_float_layer(layer) for layer in graph.layers if op_kind(layer)):
        method += f"; float layers costed as reference kernels ({REFERENCE_KERNEL_SLOWDOWN:.1f}x), uncalibrated"
        error = max(error, FLOAT_ERROR_PCT)
    return Figure(round(ms, 3), "ms", "estimated", method, error_pct=round(error, 1))


# ---- fitting (used by benchmarks/latency_model_error.py; results stored above as constants) ----


def calibration_graphs(rows: Sequence[CalibrationRow], base: Path | None = None) -> dict[str, GraphInfo]:
    """Parsed model files of ``rows`` that exist under ``base`` (default: ``../shared``), by ``model_file``."""
    from search.tflite_graph import parse_tflite

    base = base if base is not None else CALIBRATION_CSV.parents[1]
    graphs: dict[str, GraphInfo] = {}
    for row in rows:
        if row.model_file and row.model_file not in graphs and (base / row.model_file).is_file():
            graphs[row.model_file] = parse_tflite((base / row.model_file).read_bytes())
    return graphs


def _scaled(c: CoreCoefficients, mac_factor: float, flash_factor: float = 1.0) -> CoreCoefficients:
    return replace(
        c,
        conv_mac_per_cycle=c.conv_mac_per_cycle * mac_factor,
        dw_mac_per_cycle=c.dw_mac_per_cycle * mac_factor,
        fc_mac_per_cycle=c.fc_mac_per_cycle * mac_factor,
        flash_cycles_per_byte=c.flash_cycles_per_byte * flash_factor,
    )


def estimate_row(row: CalibrationRow, coefficients: dict[str, CoreCoefficients], graphs: dict[str, GraphInfo],
                 proxy: GraphInfo | None) -> float | None:  # fmt: skip
    """Estimated ms of a calibration row: per layer when its model file is here, else MACs x the
    per-MAC cost of ``proxy`` (the MLPerf VWW MobileNet); None when neither is possible."""
    c = coefficients.get(row.core_class)
    if c is None:
        return None
    graph = graphs.get(row.model_file)
    if graph is not None:
        return estimate_cycles(graph, c) / (row.clock_mhz * 1000.0)
    if proxy is None or not proxy.macs:
        return None
    return row.macs * estimate_cycles(proxy, c) / proxy.macs / (row.clock_mhz * 1000.0)


def fit_coefficients(
    rows: Sequence[CalibrationRow], base: Path | None = None
) -> tuple[dict[str, CoreCoefficients], dict[str, GraphInfo]]:
    """Fit every class's coefficients to ``rows`` as the module docstring describes."""
    import numpy as np
    from scipy.optimize import least_squares

    base = base if base is not None else CALIBRATION_CSV.parents[1]
    graphs = calibration_graphs(rows, base)
    used = [r for r in rows if r.fitted]

    def log_errors(cls_rows: list[CalibrationRow], coeffs_of: dict[str, CoreCoefficients]) -> np.ndarray:
        out = []
        for r in cls_rows:
            est = estimate_row(r, coeffs_of, graphs, None)
            assert est is not None  # only rows whose model file was parsed are fitted per layer
            out.append(math.log(est / r.latency_ms))
        return np.array(out)

    # M4 + M33: shared relative costs, one extra speed factor for the M33.
    m_rows = [r for r in used if r.core_class in ("cortex-m4", "cortex-m33") and r.model_file in graphs]

    def m_model(p: np.ndarray) -> dict[str, CoreCoefficients]:
        conv, dw, fc, flash, over, s33 = (float(v) for v in np.exp(p))
        m4 = CoreCoefficients(conv, dw, fc, flash, over)
        return {"cortex-m4": m4, "cortex-m33": _scaled(m4, s33, 1.0 / s33)}

    # Weak priors keep the two terms the rows cannot separate physical: flash ~1 cycle/byte
    # (sequential reads with prefetch), ~3,000 cycles of interpreter + kernel set-up per op.
    prior = np.log([1.0, 3000.0])

    def m_residuals(p: np.ndarray) -> np.ndarray:
        return np.concatenate([log_errors(m_rows, m_model(p)), PRIOR_WEIGHT * (p[3:5] - prior)])

    p0 = np.log([0.25, 0.1, 0.25, 1.0, 3000.0, 1.2])
    fit = least_squares(m_residuals, p0)
    coeffs = m_model(fit.x)
    m4 = coeffs["cortex-m4"]

    # Helium: conv, dw MAC/cycle and flash cost fitted; per-op overhead from the M4 fit.
    h_rows = [r for r in used if r.core_class == "helium" and r.model_file in graphs]

    def h_model(p: np.ndarray) -> dict[str, CoreCoefficients]:
        conv, dw, flash = (float(v) for v in np.exp(p))
        return {"helium": CoreCoefficients(conv, dw, conv, flash, m4.per_op_overhead_cycles)}

    def h_residuals(p: np.ndarray) -> np.ndarray:
        return np.concatenate([log_errors(h_rows, h_model(p)), PRIOR_WEIGHT * (p[2:3] - prior[:1])])

    if h_rows:
        fit = least_squares(h_residuals, np.log([2.0, 1.0, 1.0]))
        coeffs.update(h_model(fit.x))

    # M7: M4 coefficients scaled by one factor, fitted on MAC totals with the VWW layer mix.
    proxy = next((g for f, g in graphs.items() if "vww_96_int8" in f), None)
    m7_rows = [r for r in used if r.core_class == "cortex-m7"]
    if m7_rows and proxy is not None:
        ratios = []
        for r in m7_rows:
            est = estimate_row(r, {"cortex-m7": m4}, graphs, proxy)
            assert est is not None
            ratios.append(math.log(est / r.latency_ms))
        coeffs["cortex-m7"] = _scaled(m4, math.exp(float(np.mean(ratios))))
    coeffs["xtensa-lx7"] = _scaled(coeffs["cortex-m33"], 1.5, 2.0)
    return coeffs, graphs


def row_errors(
    rows: Sequence[CalibrationRow], coefficients: dict[str, CoreCoefficients], graphs: dict[str, GraphInfo]
) -> list[tuple[CalibrationRow, float | None, float | None]]:
    """(row, estimated ms, signed % error) for every row, estimated with ``coefficients``."""
    proxy = next((g for f, g in graphs.items() if "vww_96_int8" in f), None)
    out: list[tuple[CalibrationRow, float | None, float | None]] = []
    for r in rows:
        est = estimate_row(r, coefficients, graphs, proxy)
        out.append((r, est, None if est is None else 100.0 * (est - r.latency_ms) / r.latency_ms))
    return out


def median_abs_error(errors: Sequence[tuple[CalibrationRow, float | None, float | None]]) -> dict[str, float]:
    """Median absolute % error of the fitted rows: per class and ``"overall"``."""
    fitted = [(r, abs(e)) for r, _, e in errors if r.fitted and e is not None]
    result = {cls: median(e for r, e in fitted if r.core_class == cls) for cls in {r.core_class for r, _ in fitted}}
    if fitted:
        result["overall"] = median(e for _, e in fitted)
    return result


def leave_one_out_errors(
    rows: Sequence[CalibrationRow], base: Path | None = None
) -> list[tuple[CalibrationRow, float | None, float | None]]:
    """(row, estimated ms, signed % error) of each fitted row predicted by a fit WITHOUT that row.

    Out-of-sample errors: the honest figure for boards and models the fit has not seen.
    """
    out: list[tuple[CalibrationRow, float | None, float | None]] = []
    for i, row in enumerate(rows):
        if not row.fitted:
            continue
        rest = [r for j, r in enumerate(rows) if j != i]
        if not any(r.fitted and r.core_class == row.core_class for r in rest):
            out.append((row, None, None))
            continue
        coeffs, graphs = fit_coefficients(rest, base)
        graphs.update(calibration_graphs([row], base))
        out.extend(row_errors([row], coeffs, graphs))
    return out
