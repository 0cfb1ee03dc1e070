"""Tables the Candidate page shows, built from a trial's stored figures (pandas DataFrames).

Every figure keeps its provenance: the ``kind`` column says ``measured`` (a real runtime ran here)
or ``estimated`` (a model of a board we cannot run), with the estimator's known error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from search.front import TrialRow
from search.result import BUDGETS

#: Figures in the order the page lists them, with readable names.
FIGURE_NAMES: dict[str, str] = {
    "accuracy": "accuracy (deployed artifact)",
    "keras_accuracy": "accuracy before conversion (Keras)",
    "latency_ms": "latency p50",
    "latency_p99_ms": "latency p99",
    "host_latency_ms": "host latency p50",
    "host_latency_p99_ms": "host latency p99",
    "flash_kb": "flash",
    "model_flash_kb": "model array in flash",
    "runtime_code_kb": "runtime code in flash",
    "sram_kb": "SRAM",
    "arena_bytes": "TFLM tensor arena",
}
_PERCENT = ("accuracy", "keras_accuracy")


def fmt_value(name: str, fig: Mapping[str, Any]) -> str:
    """A figure's value with its unit (accuracy as a percentage)."""
    value = float(fig["value"])
    if name in _PERCENT:
        return f"{value * 100:.2f} %"
    if fig.get("unit") == "B":
        return f"{value:,.0f} B"
    return f"{value:,.2f} {fig.get('unit', '')}".strip()


def fmt_kind(fig: Mapping[str, Any]) -> str:
    """``measured`` or ``estimated ±x%``."""
    err = fig.get("error_pct")
    return f"{fig.get('kind', '?')} ±{err:.0f}%" if err is not None else str(fig.get("kind", "?"))


def figures_table(figures: Mapping[str, Mapping[str, Any]], budgets: Mapping[str, float]) -> pd.DataFrame:
    """One row per figure: value, kind (measured / estimated ±error), budget and verdict, method."""
    budget_keys = set(BUDGETS.values())
    order = [n for n in FIGURE_NAMES if n in figures] + sorted(n for n in figures if n not in FIGURE_NAMES)
    rows = []
    for name in order:
        fig = figures[name]
        limit = budgets.get(name) if name in budget_keys else None
        rows.append(
            {
                "figure": FIGURE_NAMES.get(name, name),
                "value": fmt_value(name, fig),
                "kind": fmt_kind(fig),
                "budget": f"{limit:,.1f}" if limit is not None else "",
                "fits": ("yes" if float(fig["value"]) <= limit else "NO") if limit is not None else "",
                "how": str(fig.get("method", "")),
            }
        )
    return pd.DataFrame(rows, columns=["figure", "value", "kind", "budget", "fits", "how"])


def layers_table(layers: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per-layer table: op, MACs, weights (count and bytes), activation bytes, output shape."""
    rows = [
        {
            "#": layer.get("index", i),
            "op": layer.get("op", "?"),
            "MACs": int(layer.get("macs", 0)),
            "weights": int(layer.get("weight_params", 0)),
            "weight bytes": int(layer["weight_bytes"]) if "weight_bytes" in layer else None,
            "activation bytes": int(layer["activation_bytes"]) if "activation_bytes" in layer else None,
            "output shape": "x".join(str(d) for d in layer.get("output_shape", [])),
        }
        for i, layer in enumerate(layers)
    ]
    return pd.DataFrame(
        rows, columns=["#", "op", "MACs", "weights", "weight bytes", "activation bytes", "output shape"]
    )


def sparsity_rows(sparsity: Mapping[str, Any]) -> dict[str, str]:
    """The sparsity truth as label -> text: zero weights, stored vs gzip bytes, flash actually saved."""
    stored = int(sparsity.get("stored_bytes", 0))
    gz = int(sparsity.get("gzip_bytes", 0))
    out = {
        "zero weights": f"{float(sparsity.get('zero_weight_fraction', 0.0)) * 100:.1f} %",
        "stored size": f"{stored:,} B",
        "gzip size": f"{gz:,} B" + (f" ({gz / stored:.0%} of stored)" if stored else ""),
        "flash saved on the board": f"{int(sparsity.get('flash_saved_bytes', 0)):,} B",
    }
    return out


def compare_table(rows: Sequence[TrialRow], budgets: Mapping[str, float]) -> pd.DataFrame:
    """Candidates side by side: one column per trial, one row per setting or figure."""
    data: dict[str, list[str]] = {}
    index = ["precision", "width", "sparsity", "fits every budget"]
    names = [n for n in FIGURE_NAMES if any(n in r.figures for r in rows)]
    index += [FIGURE_NAMES[n] for n in names]
    for row in rows:
        spec = row.spec or row.params
        col = [
            str(spec.get("precision", "?")),
            f"{float(spec.get('width', 0)):g}",
            f"{float(spec.get('sparsity', 0)):.0%}",
            "yes" if row.feasible else "no: over " + ", ".join(b for b, ok in row.verdicts.items() if not ok),
        ]
        for n in names:
            fig = row.figures.get(n)
            col.append(f"{fmt_value(n, fig)} ({fmt_kind(fig)})" if fig else "-")
        data[f"trial {row.number}"] = col
    return pd.DataFrame(data, index=index)
