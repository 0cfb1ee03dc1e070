"""What the app's charts show (plain dataclasses, tested on their own) and how plotly draws them.

- :func:`rejudge`: a study's :class:`~search.front.FrontReport` judged again against other budgets
  (the Pareto page's sliders): verdicts, feasible set, front, knee and hypervolume, from the stored
  figures only (nothing is re-run or re-read).
- :func:`front_info` -> :class:`FrontInfo` (points on two chosen axes, budget lines, knee, axis
  ranges: the data's range by default, a budget outside it named at the edge; or up to the
  budgets; linear or log) and :func:`front_figure` draws it: colour = precision, marker size =
  sparsity, filled = feasible, open and faded = over a budget, black ring = on the feasible
  Pareto front, gold star = knee.
- :func:`budget_bars` -> :class:`BudgetBar` per budget and :func:`budget_figure`: one candidate's
  flash, SRAM and latency as a share of each budget, with the budget line at 100 %.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from explorer.app.state import display_unit
from search.errors import ConfigError
from search.front import FrontReport, TrialRow, judge_front
from search.result import BUDGETS
from search.targets import Target

if TYPE_CHECKING:
    import plotly.graph_objects as go

#: Figures the front can be drawn on, with their axis titles.
AXES: dict[str, str] = {
    "accuracy": "Accuracy of the deployed model",
    "latency_ms": "Latency p50 (ms)",
    "flash_kb": "Flash (KiB)",
    "sram_kb": "SRAM (KiB)",
}
#: Budgeted figures (flash_kb, sram_kb, latency_ms) and the budget's short name.
BUDGET_NAMES: dict[str, str] = {figure: budget for budget, figure in BUDGETS.items()}
FIGURE_LABELS: dict[str, str] = {
    "flash_kb": "flash",
    "sram_kb": "SRAM",
    "latency_ms": "latency",
    "accuracy": "accuracy",
}
PRECISION_COLOURS: dict[str, str] = {
    "float32": "#1f77b4",
    "float16": "#17becf",
    "int8": "#2ca02c",
    "int8_qat": "#9467bd",
    "int16x8": "#ff7f0e",
}


# ------------------------------------------------------------------------------------------ judging


def rejudge(report: FrontReport, budgets: Mapping[str, float]) -> FrontReport:
    """``report`` judged against ``budgets`` (``{"flash_kb": .., "sram_kb": .., "latency_ms": ..}``).

    Missing keys keep the report's budgets. Returns a new report; ``report`` is not changed.
    """
    limits = {**report.budgets, **{k: float(v) for k, v in budgets.items() if k in report.budgets}}
    rows: list[TrialRow] = []
    for row in report.trials:
        if row.state == "COMPLETE" and row.figures:
            verdicts = {b: row.figures[k]["value"] <= limits[k] for b, k in BUDGETS.items() if k in row.figures}
            fits = len(verdicts) == len(BUDGETS) and all(verdicts.values())
            rows.append(replace(row, verdicts=verdicts, feasible=fits))
        else:
            rows.append(row)
    own = Target.from_dict(report.target)
    target = own.with_budgets(limits["flash_kb"], limits["sram_kb"], limits["latency_ms"])
    out = replace(report, trials=rows, budgets=limits, target=target.to_dict(), front=[], knee=None, hypervolume=0.0)
    return judge_front(out, target)


# ------------------------------------------------------------------------------------------ the front


@dataclass(frozen=True)
class FrontPoint:
    """One finished trial placed on the chart."""

    number: int
    x: float
    y: float
    precision: str
    sparsity: float
    width: float
    feasible: bool
    on_front: bool
    over: tuple[str, ...]
    hover: str


@dataclass(frozen=True)
class FrontInfo:
    """Everything the Pareto chart shows, independent of plotly."""

    study_name: str
    x: str
    y: str
    points: tuple[FrontPoint, ...]
    budget_lines: dict[str, float]  # axis ("x" / "y") -> budget on that axis
    knee: int | None
    front: tuple[int, ...]
    feasible: int
    finished: int
    failed: int
    running: int
    hypervolume: float
    x_range: tuple[float, float] = (0.0, 1.0)  # in data units (log axes: still data units)
    y_range: tuple[float, float] = (0.0, 1.0)
    log_x: bool = False
    log_y: bool = False
    off_chart: dict[str, float] = field(default_factory=dict)  # axis -> budget outside the shown range

    def point(self, number: int) -> FrontPoint:
        for p in self.points:
            if p.number == number:
                return p
        raise KeyError(f"trial {number} is not on the chart")


def _fmt_figure(name: str, fig: Mapping[str, Any]) -> str:
    value = float(fig["value"])
    text = (
        f"{value * 100:.1f}%"
        if name in ("accuracy", "keras_accuracy")
        else f"{value:,.1f} {display_unit(str(fig.get('unit', '')))}"
    )
    extra = f", ±{fig['error_pct']:.0f}%" if fig.get("error_pct") is not None else ""
    return f"{text} ({fig.get('kind', '?')}{extra})"


def _hover(row: TrialRow, precision: str, sparsity: float, width: float, over: tuple[str, ...]) -> str:
    lines = [f"<b>trial {row.number}</b>", f"{precision} · width {width:g} · sparsity {sparsity:.0%}"]
    for name in AXES:
        if name in row.figures:
            lines.append(f"{FIGURE_LABELS[name]}: {_fmt_figure(name, row.figures[name])}")
    if "latency_p99_ms" in row.figures:
        lines.append(f"latency p99: {_fmt_figure('latency_p99_ms', row.figures['latency_p99_ms'])}")
    lines.append("fits every budget" if not over else "over budget: " + ", ".join(over))
    return "<br>".join(lines)


def _spec_value(row: TrialRow, key: str, default: Any) -> Any:
    if key in row.params:
        return row.params[key]
    return row.spec.get(key, default)


def _axis_range(
    name: str, values: list[float], budget: float | None, to_budget: bool, log: bool
) -> tuple[tuple[float, float], float | None]:
    """The shown range of one axis and the budget when it lies outside that range."""
    if not values:
        return (0.0, 1.0), None
    low, high = min(values), max(values)
    if budget is not None and to_budget:
        low, high = min(low, budget), max(high, budget)
    if log:
        shown = (max(low / 1.15, 1e-9), high * 1.15)
    elif name == "accuracy":
        shown = (max(0.0, low - 0.03), min(1.0, high + 0.03) if high < 0.995 else 1.005)
    else:
        pad = (high - low) * 0.06 or abs(high) * 0.05 or 1.0
        shown = (low - pad, high + pad)
    off = budget if budget is not None and not shown[0] <= budget <= shown[1] else None
    return shown, off


def front_info(
    report: FrontReport,
    x: str = "latency_ms",
    y: str = "accuracy",
    *,
    to_budget: bool = False,
    log_x: bool = False,
    log_y: bool = False,
) -> FrontInfo:
    """The points of every finished trial on axes ``x`` and ``y`` (two different keys of :data:`AXES`).

    Axes span the data (``to_budget``: up to the budgets); a budget outside the shown range is
    listed in ``off_chart`` so the figure names it at the edge instead of squeezing the points.
    """
    for axis in (x, y):
        if axis not in AXES:
            raise ConfigError(f"unknown axis '{axis}'; expected one of: {', '.join(AXES)}")
    if x == y:
        raise ConfigError(f"the two axes must show different figures, got '{x}' twice")
    front = set(report.front)
    points: list[FrontPoint] = []
    for row in report.trials:
        if row.state != "COMPLETE" or x not in row.figures or y not in row.figures:
            continue
        precision = str(_spec_value(row, "precision", "?"))
        sparsity = float(_spec_value(row, "sparsity", 0.0))
        width = float(_spec_value(row, "width", 0.0))
        over = tuple(FIGURE_LABELS[BUDGETS[b]] for b, ok in row.verdicts.items() if not ok)
        points.append(
            FrontPoint(
                number=row.number,
                x=float(row.figures[x]["value"]),
                y=float(row.figures[y]["value"]),
                precision=precision,
                sparsity=sparsity,
                width=width,
                feasible=row.feasible,
                on_front=row.number in front,
                over=over,
                hover=_hover(row, precision, sparsity, width, over),
            )
        )
    lines = {axis: report.budgets[name] for axis, name in (("x", x), ("y", y)) if name in report.budgets}
    states = [r.state for r in report.trials]
    x_range, x_off = _axis_range(x, [p.x for p in points], lines.get("x"), to_budget, log_x)
    y_range, y_off = _axis_range(y, [p.y for p in points], lines.get("y"), to_budget, log_y)
    off = {axis: v for axis, v in (("x", x_off), ("y", y_off)) if v is not None}
    return FrontInfo(
        study_name=report.study_name,
        x=x,
        y=y,
        points=tuple(points),
        budget_lines=lines,
        knee=report.knee,
        front=tuple(report.front),
        feasible=sum(p.feasible for p in points),
        finished=len(points),
        failed=states.count("FAIL"),
        running=states.count("RUNNING"),
        hypervolume=report.hypervolume,
        x_range=x_range,
        y_range=y_range,
        log_x=log_x,
        log_y=log_y,
        off_chart=off,
    )


def _marker_size(sparsity: float) -> float:
    return 9.0 + 14.0 * min(max(sparsity, 0.0), 0.95)


def front_figure(info: FrontInfo, selected: int | None = None) -> go.Figure:
    """The plotly scatter of ``info``; each point's ``customdata`` is ``[trial number]``."""
    import plotly.graph_objects as go

    fig = go.Figure()
    precisions = sorted({p.precision for p in info.points}, key=lambda p: (p not in PRECISION_COLOURS, p))
    for precision in precisions:
        colour = PRECISION_COLOURS.get(precision, "#7f7f7f")
        for feasible in (True, False):
            pts = [p for p in info.points if p.precision == precision and p.feasible == feasible]
            if not pts:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[p.x for p in pts],
                    y=[p.y for p in pts],
                    mode="markers",
                    name=precision if feasible else f"{precision} (over budget)",
                    legendgroup=precision,
                    customdata=[[p.number] for p in pts],
                    hovertext=[p.hover for p in pts],
                    hoverinfo="text",
                    marker={
                        "color": colour,
                        "size": [_marker_size(p.sparsity) for p in pts],
                        "symbol": "circle" if feasible else "circle-open",
                        "opacity": 0.95 if feasible else 0.45,
                        "line": {
                            "color": ["#111111" if p.on_front else colour for p in pts],
                            "width": [2.5 if p.on_front else 1.0 for p in pts],
                        },
                    },
                )
            )
    if info.knee is not None:
        knee = next((p for p in info.points if p.number == info.knee), None)
        if knee is not None:
            fig.add_trace(
                go.Scatter(
                    x=[knee.x],
                    y=[knee.y],
                    mode="markers+text",
                    name=f"knee (trial {knee.number})",
                    text=[f"knee #{knee.number}"],
                    textposition="top center",
                    customdata=[[knee.number]],
                    hovertext=[knee.hover],
                    hoverinfo="text",
                    marker={"symbol": "star", "size": 22, "color": "#f5c518", "line": {"color": "#111", "width": 1.5}},
                )
            )
    if selected is not None:
        chosen = next((p for p in info.points if p.number == selected), None)
        if chosen is not None:
            fig.add_trace(
                go.Scatter(
                    x=[chosen.x],
                    y=[chosen.y],
                    mode="markers",
                    name=f"open: trial {chosen.number}",
                    customdata=[[chosen.number]],
                    hovertext=[chosen.hover],
                    hoverinfo="text",
                    marker={"symbol": "circle-open", "size": 30, "color": "#d62728", "line": {"width": 3}},
                )
            )
    for axis, value in info.budget_lines.items():
        name = info.x if axis == "x" else info.y
        unit = "ms" if name == "latency_ms" else "KiB"
        label = f"{FIGURE_LABELS[name]} budget {value:,.1f} {unit}"
        if axis in info.off_chart:
            beyond = value > (info.x_range if axis == "x" else info.y_range)[1]
            where = ("→ right" if beyond else "← left") if axis == "x" else ("↑ above" if beyond else "↓ below")
            fig.add_annotation(
                xref="paper",
                yref="paper",
                x=1.0 if axis == "x" else 0.0,
                y=1.06 if axis == "x" else 1.12,
                xanchor="right" if axis == "x" else "left",
                text=f"{label}: off the chart ({where}); switch on 'To budgets' to show it",
                showarrow=False,
                font={"color": "#d62728", "size": 12},
            )
            continue
        style = {"line_dash": "dash", "line_color": "#d62728", "annotation_text": label}
        if axis == "x":
            fig.add_vline(x=value, annotation_position="top left", **style)
        else:
            fig.add_hline(y=value, annotation_position="bottom right", **style)
    fig.update_layout(
        xaxis_title=AXES[info.x] + (" (log)" if info.log_x else ""),
        yaxis_title=AXES[info.y] + (" (log)" if info.log_y else ""),
        legend_title_text="precision (size = sparsity)",
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        height=520,
    )
    import math

    for axis, name, shown, log in (
        ("xaxis", info.x, info.x_range, info.log_x),
        ("yaxis", info.y, info.y_range, info.log_y),
    ):
        layout: dict[str, Any] = {"type": "log" if log else "linear"}
        layout["range"] = [math.log10(shown[0]), math.log10(shown[1])] if log else list(shown)
        if name == "accuracy":
            layout["tickformat"] = ".0%"
        fig.update_layout({axis: layout})
    return fig


# ------------------------------------------------------------------------------------------ budgets


@dataclass(frozen=True)
class BudgetBar:
    """One budgeted figure of a candidate against its budget."""

    budget: str  # flash, sram, latency
    label: str
    value: float
    limit: float
    unit: str
    kind: str
    fits: bool

    @property
    def share(self) -> float:
        """``value / limit`` (1.0 = exactly at the budget)."""
        return self.value / self.limit if self.limit > 0 else float("inf")


def budget_bars(figures: Mapping[str, Mapping[str, Any]], budgets: Mapping[str, float]) -> list[BudgetBar]:
    """Flash, SRAM and latency of one candidate (its ``figures`` dicts) against ``budgets``."""
    bars: list[BudgetBar] = []
    for budget, key in BUDGETS.items():
        if key not in figures or key not in budgets:
            continue
        fig = figures[key]
        value, limit = float(fig["value"]), float(budgets[key])
        bars.append(
            BudgetBar(
                budget=budget,
                label=FIGURE_LABELS[key],
                value=value,
                limit=limit,
                unit=display_unit(str(fig.get("unit", ""))),
                kind=str(fig.get("kind", "?")),
                fits=value <= limit,
            )
        )
    return bars


def budget_figure(bars: list[BudgetBar]) -> go.Figure:
    """Horizontal bars: each figure as % of its budget, green when it fits, red when over; line at 100 %."""
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Bar(
            x=[b.share * 100 for b in bars],
            y=[f"{b.label} ({b.kind})" for b in bars],
            orientation="h",
            marker_color=["#2ca02c" if b.fits else "#d62728" for b in bars],
            text=[f"{b.value:,.1f} / {b.limit:,.1f} {b.unit} ({b.share:.0%})" for b in bars],
            textposition="auto",
            hoverinfo="text",
        )
    )
    top = max([110.0] + [b.share * 100 * 1.08 for b in bars])
    fig.add_vline(x=100, line_dash="dash", line_color="#111", annotation_text="budget")
    fig.update_layout(
        xaxis={"title": "% of budget", "range": [0, top]},
        height=80 + 55 * len(bars),
        margin={"l": 10, "r": 10, "t": 25, "b": 10},
        showlegend=False,
        yaxis={"autorange": "reversed"},
    )
    return fig
