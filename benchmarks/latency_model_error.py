"""Error of tinyfront's MCU latency model on every published board latency in the calibration CSV.

Run: ``python benchmarks/latency_model_error.py``. Prints, for every row of
``../shared/calibration/mcu_latency.csv``: model, board, engine, measured ms, the estimate from
the coefficients stored in ``search/latency_model.py``, the % error and whether the row is used
for fitting; then the median absolute error (overall and per core class) in-sample and
leave-one-out, and how far a fresh fit lands from the stored constants.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.table import format_table  # noqa: E402
from search import latency_model as lm  # noqa: E402


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main() -> int:
    rows = lm.calibration_rows()
    if not rows:
        print(f"calibration file not found: {lm.CALIBRATION_CSV}")
        return 1
    warnings.simplefilter("ignore")
    fitted, graphs = lm.fit_coefficients(rows)
    errors = lm.row_errors(rows, lm.COEFFICIENTS, graphs)
    table = [
        (
            r.model,
            r.board,
            r.core_class,
            r.engine,
            f"{r.latency_ms:g}",
            _fmt(est, ".2f"),
            _fmt(err, "+.1f"),
            "yes" if r.fitted else "no",
            "per layer" if r.model_file in graphs else "MAC total x VWW mix",
        )
        for r, est, err in errors
    ]
    headers = ("model", "board", "class", "engine", "measured ms", "estimated ms", "error %", "fitted", "estimate from")
    print(format_table(headers, table))

    loo = lm.leave_one_out_errors(rows)
    in_sample = lm.median_abs_error(errors)
    out_sample = lm.median_abs_error(loo)
    print("\nmedian absolute error of the fitted rows (stored coefficients):")
    print(
        format_table(
            ("class", "in-sample %", "leave-one-out %", "stated error_pct"),
            [
                (
                    cls,
                    f"{in_sample[cls]:.1f}",
                    _fmt(out_sample.get(cls), ".1f"),
                    f"{lm.ERROR_PCT.get(cls, lm.OVERALL_ERROR_PCT):.1f}" if cls != "overall" else "",
                )
                for cls in sorted(in_sample)
            ],
        )
    )
    print(f"xtensa-lx7: no rows; stated error {lm.XTENSA_ERROR_PCT:g}% is an assumption")
    unfitted = [(r, e) for r, _, e in errors if not r.fitted and e is not None]
    for r, e in unfitted:
        print(f"not fitted: {r.model} on {r.board} ({r.engine}): {e:+.1f}% (an older or reference-kernel engine)")

    print("\nfresh fit vs stored constants (largest relative difference per class):")
    for cls, c in fitted.items():
        stored = lm.COEFFICIENTS[cls]
        diff = max(abs(getattr(c, f) / getattr(stored, f) - 1) for f in stored.__dataclass_fields__)
        print(f"  {cls}: {100 * diff:.2f}%  {c}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
