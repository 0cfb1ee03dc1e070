"""What the notebook magics show: a study's front as a DataFrame and a plotly figure, a search summary,
a compact text form of a :class:`~search.result.CandidateResult`.

Every figure keeps its kind (``measured`` here or ``estimated`` for the board) beside its value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from search.front import FrontReport, TrialRow

#: The figures a front shows, with their short names.
FIGURES = {"accuracy": "accuracy", "latency_ms": "latency", "flash_kb": "flash", "sram_kb": "sram"}


@dataclass(repr=False)
class SearchSummary:
    """What ``%tinyfront search`` returns: the study, its trial counts, its feasible front."""

    study_name: str
    storage: str
    trials: int
    complete: int
    failed: int
    feasible: int
    interrupted: bool
    seconds: float
    report: FrontReport = field(repr=False)
    front: pd.DataFrame = field(repr=False)
    stopped: int = 0  # stopped early: they could not reach the front (search.early_stop)

    def headline(self) -> str:
        stop = "interrupted; re-run the same line to resume" if self.interrupted else "finished"
        return (
            f"study {self.study_name} ({stop}): {self.trials} trials, {self.complete} complete, "
            f"{self.failed} failed, "
            + (f"{self.stopped} stopped early, " if self.stopped else "")
            + f"{self.feasible} feasible, {len(self.front)} on the front "
            f"({self.seconds:.0f} s this run)"
        )

    def _repr_html_(self) -> str:
        return f"<p>{self.headline()}</p>" + str(self.front.to_html())

    def __repr__(self) -> str:
        return self.headline() + "\n" + self.front.to_string()


def front_frame(report: FrontReport, *, all_trials: bool = False) -> pd.DataFrame:
    """The front (or every trial) as a DataFrame: parameters, figures with their kind, verdicts, knee."""
    import pandas as pd

    rows = report.trials if all_trials else [report.row(n) for n in report.front]
    records = [_record(report, r) for r in rows]
    columns = ["trial", "width", "sparsity", "precision", "resolution", *FIGURES]
    columns += [f"{name}_kind" for name in FIGURES] + [
        "feasible",
        "knee",
        "state",
        "fail_reason",
        "stop_reason",
        "artifacts_dir",
    ]
    return pd.DataFrame.from_records(records, columns=columns).set_index("trial")


def _record(report: FrontReport, r: TrialRow) -> dict[str, Any]:
    rec: dict[str, Any] = {"trial": r.number, "feasible": r.feasible, "knee": r.number == report.knee}
    for name in ("width", "sparsity", "precision", "resolution"):
        rec[name] = r.spec.get(name, r.params.get(name))
    for name in FIGURES:
        fig = r.figures.get(name)
        rec[name] = float(fig["value"]) if fig else np.nan
        rec[f"{name}_kind"] = fig["kind"] if fig else None
    rec.update(state=r.state, fail_reason=r.fail_reason, stop_reason=r.stop_reason, artifacts_dir=r.artifacts_dir)
    return rec


def front_figure(report: FrontReport, x: str = "latency_ms", y: str = "accuracy") -> go.Figure:
    """Scatter of every measured trial (feasible vs over budget), the feasible front, the knee, budget lines."""
    import plotly.graph_objects as go

    df = front_frame(report, all_trials=True).dropna(subset=[x, y])
    fig = go.Figure()
    groups = (("over budget", ~df["feasible"], "#b0b0b0", "x"), ("feasible", df["feasible"], "#1f77b4", "circle"))
    for label, mask, color, symbol in groups:
        part = df[mask]
        hover = [
            f"trial {t}: {p} w={w:g} s={s:g}<br>"
            + "<br>".join(f"{n} {row[n]:.4g} ({row[n + '_kind']})" for n in FIGURES if row[n + "_kind"])
            for t, p, w, s, row in zip(
                part.index, part["precision"], part["width"], part["sparsity"], part.to_dict("records"), strict=True
            )
        ]
        fig.add_scatter(
            x=part[x],
            y=part[y],
            mode="markers",
            name=label,
            text=hover,
            hoverinfo="text",
            marker={"color": color, "symbol": symbol, "size": 9},
        )
    front = df.loc[[n for n in report.front if n in df.index]]
    if len(front):
        ordered = front.sort_values(x)
        fig.add_scatter(x=ordered[x], y=ordered[y], mode="lines", name="feasible front", line={"color": "#1f77b4"})
    if report.knee is not None and report.knee in df.index:
        knee = df.loc[report.knee]
        fig.add_scatter(
            x=[knee[x]],
            y=[knee[y]],
            mode="markers",
            name=f"knee (trial {report.knee})",
            marker={"color": "#d62728", "symbol": "star", "size": 16},
        )
    if x in report.budgets:
        fig.add_vline(
            x=report.budgets[x], line_dash="dash", line_color="#d62728", annotation_text=f"{FIGURES[x]} budget"
        )
    if y in report.budgets:
        fig.add_hline(
            y=report.budgets[y], line_dash="dash", line_color="#d62728", annotation_text=f"{FIGURES[y]} budget"
        )
    fig.update_layout(
        title=f"{report.study_name} on {report.target['name']}: {len(report.front)} on the feasible front",
        xaxis_title=_axis_title(x),
        yaxis_title=_axis_title(y),
        template="plotly_white",
    )
    return fig


def _axis_title(name: str) -> str:
    return {
        "accuracy": "accuracy (measured, deployed artifact)",
        "latency_ms": "latency (ms)",
        "flash_kb": "flash (KiB)",
        "sram_kb": "SRAM (KiB)",
    }[name]


def display_figure(fig: go.Figure) -> None:
    from IPython.display import HTML, display

    try:
        display(fig)
    except ValueError:  # plotly's mime renderer needs nbformat; fall back to HTML
        display(HTML(fig.to_html(full_html=False, include_plotlyjs="cdn")))


def candidate_pretty(result: Any, p: Any, cycle: bool) -> None:
    """Compact text form of a CandidateResult: spec, target, figures against budgets, verdict."""
    p.text(candidate_summary(result))


def candidate_summary(result: Any) -> str:
    """``CandidateResult`` in a few lines: what it is, each figure (measured / estimated) and its budget."""
    from search.result import BUDGETS, budget_of

    s, t = result.spec, result.target
    lines = [
        f"CandidateResult: {s.family} width {s.width:g}, sparsity {s.sparsity:g}, {s.precision}"
        f"{f', {s.resolution} px' if s.resolution else ''} on {t.name} ({t.runtime})",
    ]
    limits = {key: budget_of(t, b) for b, key in BUDGETS.items()}
    for key, fig in result.figures.items():
        budget = f" (budget {limits[key]:g})" if key in limits else ""
        lines.append(f"  {key}: {fig.label()}{budget}")
    verdicts = ", ".join(f"{b} {'fits' if ok else 'over'}" for b, ok in result.verdicts.items())
    lines.append(f"  {'feasible' if result.feasible else 'infeasible'}: {verdicts}; artifacts: {result.artifacts_dir}")
    return "\n".join(lines)
