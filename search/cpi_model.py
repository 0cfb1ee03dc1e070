"""Latency of TFLM + CMSIS-NN on a microcontroller from the device's own instruction count: an ESTIMATE.

cycles = cpi[class] * instructions + flash_cycles_per_byte[class] * weight_bytes
latency_ms = cycles / (clock_mhz * 1000)

``instructions`` is MEASURED: the dynamic instruction count of one ``Invoke()`` of the real TFLM +
CMSIS-NN code for the core, from the device runner under ``qemu-system-arm -icount shift=0``
(:mod:`search.device_runner`). ``cpi`` (cycles per instruction of the core class) and the flash
term (stall cycles per weight byte read from flash: the README of the calibration data notes that
fully connected layers are bound by flash reads and that clock alone misses wait states) are
FITTED per class, by least squares on relative error with coefficients >= 0, to the published rows in
``search/calibration/mcu_latency.csv`` that model a current TFLM + CMSIS-NN build:

- ``microtvm+cmsis-nn`` rows (NUCLEO-L4R5ZI Cortex-M4, nRF5340-DK Cortex-M33): the same CMSIS-NN
  kernels with a current runtime; the best available proxy for current TFLM on these boards.
- ``tflm+cmsis-nn(helium)`` rows (EK-RA8D1 Cortex-M85): instructions from the Cortex-M55 runner
  (the same Helium code paths; the M85's own pipeline is what its CPI absorbs).

NOT fitted: the ``tflm-2.3.1+cmsis-nn`` rows (an old TFLM 1.2-3.5x slower than current), and the
STM32H743 rows (no model file, so no instruction count). Cortex-M7 has no fitted rows: it has no
calibrated CPI (:func:`estimate_latency` refuses it rather than guess).

Intervals: each fitted row is predicted by a fit without it (leave-one-out); the 90 % interval
is ``[pred * exp(-h), pred * exp(h)]`` with ``h`` the split-conformal 90 % quantile of the pooled
absolute log residuals (the ceil(0.9 (n+1))-th smallest of n), which covers a new row with
probability >= 90 % if rows are exchangeable. ``benchmarks/latency_device_model.py`` checks the
coverage on held-out rows (each row's interval computed without it).

Users extend it: ``tinyfront calibrate`` fits one CPI per target to their own board's latencies and
writes a file in the same format; a target whose ``targets.toml`` entry names it
(``latency_calibration``, checked by :mod:`search.targets` with :func:`load_fit`) has its
device-runner latencies estimated with it, and the figure's method names that file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.errors import MeasurementError
from search.figures import Figure
from search.latency_model import CORE_CLASSES, CalibrationRow, calibration_rows

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
PUBLISHED_CSV = CALIBRATION_DIR / "mcu_latency.csv"
FIT_JSON = CALIBRATION_DIR / "cpi_fit.json"

#: targets.toml core -> the device runner that counts its instructions.
RUNNER_FOR_CORE: dict[str, str] = {
    "cortex-m4": "cortex-m4",
    "cortex-m4f": "cortex-m4",
    "cortex-m33": "cortex-m33",
    "cortex-m7": "cortex-m7",
    "cortex-m55": "cortex-m55",
    "cortex-m85": "cortex-m55",
}
#: targets.toml core -> CPI class (one fitted CPI each): the MAC model's core classes, for the cores a
#: device runner counts instructions on.
CPI_CLASS: dict[str, str] = {core: cls for core, cls in CORE_CLASSES.items() if core in RUNNER_FOR_CORE}
#: Engines of the rows the CPI model is fitted to (see the module docstring for why).
FITTED_ENGINES: tuple[str, ...] = ("microtvm+cmsis-nn", "tflm+cmsis-nn(helium)")
COVERAGE = 0.9


@dataclass(frozen=True)
class PublishedRow(CalibrationRow):
    """One published board latency (a row of mcu_latency.csv, with its source), as the CPI fit sees it."""

    @property
    def fitted(self) -> bool:
        return self.engine in FITTED_ENGINES and bool(self.model_file) and self.core in CPI_CLASS

    @property
    def cpi_class(self) -> str:
        return CPI_CLASS.get(self.core, self.core)


def published_rows(path: Path | None = None) -> list[PublishedRow]:
    """The rows of the shipped ``mcu_latency.csv`` (or ``path``), read by latency_model.calibration_rows."""
    file = path or PUBLISHED_CSV
    if not file.is_file():
        raise MeasurementError(f"published latency table {file} is missing")
    return [PublishedRow(**asdict(row)) for row in calibration_rows(file)]


@dataclass(frozen=True)
class Sample:
    """A fitted row with what the runner measured for its model: instructions and weight bytes."""

    row: PublishedRow
    instructions: int
    weight_bytes: int

    @property
    def cycles(self) -> float:
        return self.row.latency_ms * self.row.clock_mhz * 1000.0


@dataclass(frozen=True)
class CpiFit:
    """Fitted CPI and flash term per class, and the interval half-width (log space)."""

    cpi: dict[str, float]
    flash_cycles_per_byte: dict[str, float]
    log_halfwidth: float
    loo_log_residuals: tuple[float, ...]
    rows: int

    def cycles(self, cpi_class: str, instructions: float, weight_bytes: float) -> float:
        if cpi_class not in self.cpi:
            raise MeasurementError(f"no calibrated CPI for {cpi_class}; calibrated: {', '.join(sorted(self.cpi))}")
        return self.cpi[cpi_class] * instructions + self.flash_cycles_per_byte.get(cpi_class, 0.0) * weight_bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _solve(samples: Sequence[Sample], flash_term: bool) -> tuple[dict[str, float], dict[str, float]]:
    """Least squares on relative error, coefficients >= 0: per class one CPI (+ one flash term).

    The flash term is per class because it stands for the boards' flash wait states, which differ
    (an L4R5 at 120 MHz, an nRF5340 at 128 MHz, an RA8D1 at 480 MHz).
    """
    from scipy.optimize import nnls

    classes = sorted({s.row.cpi_class for s in samples})
    n = len(classes)
    a = np.zeros((len(samples), 2 * n if flash_term else n))
    for i, s in enumerate(samples):
        k = classes.index(s.row.cpi_class)
        a[i, k] = s.instructions / s.cycles
        if flash_term:
            a[i, n + k] = s.weight_bytes / s.cycles
    x, _ = nnls(a, np.ones(len(samples)))
    cpi = {c: float(x[k]) for k, c in enumerate(classes)}
    return cpi, {c: float(x[n + k]) if flash_term else 0.0 for k, c in enumerate(classes)}


def conformal_halfwidth(abs_residuals: Sequence[float], coverage: float = COVERAGE) -> float:
    """The ceil(coverage (n+1))-th smallest |residual| (the largest when that exceeds n)."""
    values = sorted(abs_residuals)
    if not values:
        return math.inf
    k = math.ceil(coverage * (len(values) + 1))
    return values[min(k, len(values)) - 1]


def loo_predictions(samples: Sequence[Sample], flash_term: bool = True) -> list[float | None]:
    """Each sample's cycles predicted by a fit without it (None when its class has no other row)."""
    out: list[float | None] = []
    for i, s in enumerate(samples):
        rest = [t for j, t in enumerate(samples) if j != i]
        if not any(t.row.cpi_class == s.row.cpi_class for t in rest):
            out.append(None)
            continue
        cpi, flash = _solve(rest, flash_term)
        out.append(cpi[s.row.cpi_class] * s.instructions + flash[s.row.cpi_class] * s.weight_bytes)
    return out


def fit(samples: Sequence[Sample], flash_term: bool = True) -> CpiFit:
    """Fit on all ``samples``; the interval comes from their leave-one-out residuals."""
    cpi, flash = _solve(samples, flash_term)
    residuals = tuple(
        math.log(s.cycles / p) for s, p in zip(samples, loo_predictions(samples, flash_term), strict=True) if p
    )
    return CpiFit(cpi, flash, conformal_halfwidth([abs(r) for r in residuals]), residuals, len(samples))


def load_fit(path: Path | None = None) -> tuple[CpiFit, dict[str, Any]]:
    """A fit and its provenance (tree, flags, counts): the shipped ``cpi_fit.json`` or ``path``.

    ``path`` is any file in the same format, e.g. one ``tinyfront calibrate`` wrote. A missing or
    malformed file is a :class:`MeasurementError` naming the file and what is wrong; the returned
    provenance carries the file under ``"path"``.
    """
    file = Path(path) if path is not None else FIT_JSON
    if not file.is_file():
        if path is None:
            raise MeasurementError(f"no CPI calibration at {file}: run benchmarks/latency_device_model.py --write")
        raise MeasurementError(f"latency calibration file not found: {file}")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MeasurementError(f"latency calibration {file} is not readable JSON: {exc}") from None
    try:
        f = data["fit"]
        fitted = CpiFit(
            {str(k): _positive(v) for k, v in f["cpi"].items()},
            {str(k): float(v) for k, v in f["flash_cycles_per_byte"].items()},
            float(f["log_halfwidth"]),
            tuple(float(r) for r in f["loo_log_residuals"]),
            int(f["rows"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise MeasurementError(
            f"latency calibration {file} is not a CPI fit (expected the format tinyfront calibrate writes: "
            f'{{"fit": {{"cpi": ..., "flash_cycles_per_byte": ..., "log_halfwidth": ..., ...}}}}): {detail}'
        ) from None
    if not fitted.cpi:
        raise MeasurementError(f"latency calibration {file} has no CPI for any core class")
    return fitted, {**data, "path": str(file)}


def _positive(value: Any) -> float:
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"a CPI must be a finite number > 0, got {value!r}")
    return number


def estimate_latency(
    instructions: int,
    weight_bytes: int,
    core: str,
    clock_mhz: float,
    calibration: tuple[CpiFit, dict[str, Any]] | None = None,
) -> Figure:
    """Estimated latency (ms) from a measured instruction count: CPI model with its 90 % interval."""
    if clock_mhz <= 0:
        raise MeasurementError(f"clock_mhz must be > 0, got {clock_mhz:g}")
    cls = CPI_CLASS.get(core.strip().lower())
    if cls is None:
        raise MeasurementError(f"no CPI model for core '{core}'; known cores: {', '.join(sorted(CPI_CLASS))}")
    cal, meta = calibration if calibration is not None else load_fit()
    ms = cal.cycles(cls, instructions, weight_bytes) / (clock_mhz * 1000.0)
    lo, hi = ms * math.exp(-cal.log_halfwidth), ms * math.exp(cal.log_halfwidth)
    method = (
        f"{instructions:,} instructions measured on the device's TFLM + CMSIS-NN code "
        f"({meta.get('runner', '?')}) x CPI "
        f"{cal.cpi[cls]:.3f} + {cal.flash_cycles_per_byte.get(cls, 0.0):.2f} flash cycles/weight byte; "
        f"calibration: {meta.get('name', 'cpi_fit')}{_calibration_file(meta)} "
        f"({cal.rows} rows, TFLM {_tree_label(meta.get('tree'))}); "
        f"90% interval {lo:.3g}-{hi:.3g} ms from leave-one-out residuals"
    )
    error_pct = 100.0 * (math.exp(cal.log_halfwidth) - 1.0)
    return Figure(round(ms, 3), "ms", "estimated", method, error_pct=round(error_pct, 1))


def _calibration_file(meta: dict[str, Any]) -> str:
    """`` [file]`` for a calibration other than the shipped one (a user's, named in targets.toml)."""
    path = meta.get("path")
    if not path or Path(path).resolve() == FIT_JSON.resolve():
        return ""
    return f" [{path}]"


def _tree_label(tree: object) -> str:
    """A commit's first 12 hex digits, or a tree folder's path (``tinyfront calibrate`` records the folder)."""
    text = str(tree or "?")
    return text[:12] if re.fullmatch(r"[0-9a-f]{40}", text) else text
