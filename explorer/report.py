"""Terminal reports of a candidate's figures beside its target's budgets."""

from __future__ import annotations

from explorer.table import format_table
from search.figures import Figure
from search.result import BUDGETS, CandidateResult, budget_of

_ROWS: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy (deployed)"),
    ("keras_accuracy", "accuracy (Keras, before conversion)"),
    ("flash_kb", "flash"),
    ("model_flash_kb", "  model (C array / file)"),
    ("runtime_code_kb", "  runtime code"),
    ("sram_kb", "SRAM"),
    ("arena_bytes", "  tensor arena"),
    ("latency_ms", "latency"),
    ("latency_p99_ms", "latency p99"),
    ("host_latency_ms", "  host latency p50"),
    ("host_latency_p99_ms", "  host latency p99"),
)


def display_unit(unit: str) -> str:
    """The one spelling of a stored unit: sizes are KiB (1 KiB = 1,024 bytes; the search divides bytes by 1,024)."""
    return "KiB" if unit in ("kB", "KB", "KiB", "kb") else unit


def _value(fig: Figure) -> str:
    if fig.unit == "fraction":
        return f"{fig.value * 100:.1f} %"
    if fig.unit == "B":
        return f"{fig.value:,.0f} B"
    unit = display_unit(fig.unit)
    return f"{fig.value:,.3g} {unit}" if fig.value < 100 else f"{fig.value:,.1f} {unit}"


def _kind(fig: Figure) -> str:
    return fig.kind + (f" ±{fig.error_pct:.0f}%" if fig.error_pct is not None else "")


def result_table(result: CandidateResult) -> str:
    """Figure, value, measured/estimated, budget and verdict for each figure of a candidate."""
    budget_for = {key: b for b, key in BUDGETS.items()}
    verdicts = result.verdicts
    rows = []
    for key, label in _ROWS:
        fig = result.figures.get(key)
        if fig is None:
            continue
        budget, verdict = "", ""
        if key in budget_for:
            b = budget_for[key]
            budget = f"<= {budget_of(result.target, b):,.4g} {fig.unit}"
            verdict = "fits" if verdicts[b] else "DOES NOT FIT"
        rows.append((label, _value(fig), _kind(fig), budget, verdict))
    return format_table(("figure", "value", "kind", "budget", "verdict"), rows)


def summary(result: CandidateResult) -> str:
    """The full report: header, figures, model facts, sparsity truth, methods, stage timings."""
    s, t = result.spec, result.target
    misses = [b for b, ok in result.verdicts.items() if not ok]
    lines = [
        f"candidate: {s.family} width {s.width:g}, sparsity {s.sparsity:g}, {s.precision} "
        f"on {t.name} ({t.core} @ {t.clock_mhz:g} MHz, {t.runtime})",
        f"dataset: {result.dataset.get('name')} ({result.dataset.get('fingerprint')})",
        "",
        result_table(result),
        "",
        "verdict: " + ("FITS every budget" if result.feasible else "does NOT fit: " + ", ".join(misses)),
        f"MACs: {result.macs:,}   parameters: {result.params:,}   ops: {', '.join(result.ops)}",
    ]
    sp = result.sparsity
    lines.append(
        f"sparsity: {sp['zero_weight_fraction'] * 100:.1f}% zero weights; stored {sp['stored_bytes']:,} B, "
        f"gzip {sp['gzip_bytes']:,} B, flash saved {sp['flash_saved_bytes']:,} B ({sp['note']})"
    )
    lines.append("how each figure was obtained:")
    for key, label in _ROWS:
        if key in result.figures:
            lines.append(f"  {label.strip()}: {result.figures[key].method}")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.stage_seconds.items())
    reused = [
        what for what, yes in (("base model", result.reused_base), ("pruned weights", result.reused_pruning)) if yes
    ]
    note = f" ({' and '.join(reused)} reused)" if reused else ""
    lines.append(f"time: {stages}{note}")
    lines.append(f"artifacts: {result.artifacts_dir}")
    return "\n".join(lines)
