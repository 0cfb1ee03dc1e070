"""Tables the Candidate page shows, built from a trial's stored figures (pandas DataFrames).

Every figure keeps its provenance: the ``kind`` column says ``measured`` (a real runtime ran here)
or ``estimated`` (a model of a board we cannot run), with the estimator's known error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from explorer.app.state import display_unit
from search.front import FrontReport, TrialRow
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
    return f"{value:,.2f} {display_unit(str(fig.get('unit', '')))}".strip()


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


def layer_latency_ms(layers: Sequence[Mapping[str, Any]], target: Mapping[str, Any]) -> list[float] | None:
    """Each layer's share of the board latency as the per-layer cost model estimates it (ms), or None
    when the target's latency is not modelled per layer (a Linux board timed on this host)."""
    from types import SimpleNamespace
    from typing import cast

    from search.errors import TinyfrontError
    from search.latency_model import core_coefficients, estimate_cycles
    from search.tflite_graph import GraphInfo, Layer

    if target.get("runtime") != "tflm" or not float(target.get("clock_mhz", 0)) > 0:
        return None
    try:
        _, coefficients = core_coefficients(str(target.get("core", "")))
    except TinyfrontError:
        return None
    out = []
    for i, layer in enumerate(layers):
        one = Layer(
            index=int(layer.get("index", i)),
            op=str(layer.get("op", "?")),
            macs=int(layer.get("macs", 0)),
            weight_params=int(layer.get("weight_params", 0)),
            weight_bytes=int(layer.get("weight_bytes", 0)),
            activation_bytes=int(layer.get("activation_bytes", 0)),
            output_shape=tuple(layer.get("output_shape", ())),
        )
        graph = cast(GraphInfo, SimpleNamespace(layers=(one,)))  # estimate_cycles reads .layers only
        out.append(estimate_cycles(graph, coefficients) / (float(target["clock_mhz"]) * 1000.0))
    return out


def _share(values: Sequence[float]) -> list[float]:
    total = float(sum(values))
    return [float(v) / total if total > 0 else 0.0 for v in values]


def layers_table(layers: Sequence[Mapping[str, Any]], target: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Every layer: op, MACs, weights (count and bytes), activation bytes, output shape, and each layer's
    share of the MACs, of the weight bytes and (MCU targets) of the estimated latency."""
    macs = [int(layer.get("macs", 0)) for layer in layers]
    weight_bytes = [int(layer.get("weight_bytes", 0)) for layer in layers]
    latency = layer_latency_ms(layers, target) if target is not None else None
    rows = []
    for i, layer in enumerate(layers):
        rows.append(
            {
                "#": layer.get("index", i),
                "op": layer.get("op", "?"),
                "MACs": macs[i],
                "MACs share": _share(macs)[i],
                "weights": int(layer.get("weight_params", 0)),
                "weight bytes": int(layer["weight_bytes"]) if "weight_bytes" in layer else None,
                "weight share": _share(weight_bytes)[i],
                "activation bytes": int(layer["activation_bytes"]) if "activation_bytes" in layer else None,
                "est. latency ms": latency[i] if latency is not None else None,
                "latency share": _share(latency)[i] if latency is not None else None,
                "output shape": "x".join(str(d) for d in layer.get("output_shape", [])),
            }
        )
    columns = ["#", "op", "MACs", "MACs share", "weights", "weight bytes", "weight share", "activation bytes"]
    columns += ["est. latency ms", "latency share", "output shape"]
    return pd.DataFrame(rows, columns=columns)


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


def differing_rows(table: pd.DataFrame) -> list[str]:
    """Rows of :func:`compare_table` whose cells are not all the same: what the comparison is about."""
    return [str(name) for name, row in table.iterrows() if row.astype(str).nunique() > 1]


def verdict(row: TrialRow, report: FrontReport) -> str:
    """One trial's standing: knee / front / equal within error to a front trial / fits / over / failed / running."""
    if row.state == "FAIL":
        return "FAIL: " + (row.fail_reason or "no reason recorded")
    if row.state == "PRUNED":
        return "stopped early: " + (row.stop_reason or "no reason recorded")
    if row.state != "COMPLETE" or not row.figures:
        return row.state.lower()
    if row.number == report.knee:
        return "★ knee (front)"
    if row.number in report.front:
        return "front"
    if row.number in report.within_noise:
        return f"≈ front (equal to #{report.within_noise[row.number]} within error)"
    if row.duplicate_of is not None:
        return f"duplicate of #{row.duplicate_of}"
    if row.feasible:
        return "fits"
    return "over " + ", ".join(b for b, ok in row.verdicts.items() if not ok)


#: Figures of the all-trials table: key -> column title (numbers, so the columns sort).
TRIAL_COLUMNS: dict[str, str] = {
    "accuracy": "accuracy",
    "latency_ms": "latency p50 (ms)",
    "flash_kb": "flash (KiB)",
    "sram_kb": "SRAM (KiB)",
}


def trials_table(report: FrontReport) -> pd.DataFrame:
    """Every trial, one row each: settings, figures as numbers, each figure's kind, and its verdict."""
    rows = []
    for r in report.trials:
        spec = r.spec or r.params
        rec: dict[str, Any] = {
            "trial": r.number,
            "state": r.state,
            "verdict": verdict(r, report),
            "precision": spec.get("precision"),
            "width": float(spec["width"]) if "width" in spec else None,
            "sparsity": float(spec["sparsity"]) if "sparsity" in spec else None,
        }
        kinds = []
        for key, title in TRIAL_COLUMNS.items():
            fig = r.figures.get(key)
            rec[title] = float(fig["value"]) if fig else None
            if fig:
                kinds.append(f"{FIGURE_NAMES.get(key, key).split(' (')[0]} {fmt_kind(fig)}")
        rec["kinds"] = "; ".join(kinds)
        rows.append(rec)
    columns = ["trial", "state", "verdict", "precision", "width", "sparsity", *TRIAL_COLUMNS.values(), "kinds"]
    return pd.DataFrame(rows, columns=columns)


def filter_trials(table: pd.DataFrame, show: str, text: str = "") -> pd.DataFrame:
    """Rows of :func:`trials_table` to show: ``show`` in all / front / fits / over / failed; ``text`` in any cell."""
    verdicts = table["verdict"].astype(str)
    keep = {
        "all": verdicts == verdicts,
        "front": verdicts.str.contains("front"),
        "fits": table["state"].eq("COMPLETE") & ~verdicts.str.startswith("over"),
        "over": verdicts.str.startswith("over"),
        "failed": table["state"].eq("FAIL"),
    }
    if show not in keep:
        raise KeyError(f"unknown filter '{show}'; expected one of: {', '.join(keep)}")
    out = table[keep[show]]
    needle = text.strip().lower()
    if needle:
        hit = out.astype(str).apply(lambda col: col.str.lower().str.contains(needle, regex=False))
        out = out[hit.any(axis=1)]
    return out
