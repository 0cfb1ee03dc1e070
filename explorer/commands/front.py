"""``tinyfront front``: the feasible Pareto front of a study, its knee and hypervolume.

Also holds the table printing that ``search`` and ``recheck`` reuse.
"""

from __future__ import annotations

import argparse
import json
import sys

from explorer.commands._args import add_storage_argument, study_name
from explorer.report import display_unit
from explorer.table import format_table
from search.figures import Figure
from search.front import FrontReport, TrialRow

_FIGURES = (("accuracy", "accuracy"), ("latency_ms", "latency"), ("flash_kb", "flash"), ("sram_kb", "SRAM"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("front", help="show the feasible Pareto front of a study")
    p.add_argument("--study", required=True, type=study_name, help="study name")
    add_storage_argument(p)
    p.add_argument("--target", help="judge against this target's budgets (same board, other budgets)")
    p.add_argument("--targets", metavar="FILE", help="targets file (default: the shipped targets.toml)")
    p.add_argument("--all", action="store_true", help="list every trial, not only the front")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from search.front import load_front
    from search.targets import get_target

    target = get_target(args.target, args.targets) if args.target else None
    report = load_front(args.storage, args.study, target)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_report(report, all_trials=args.all))
    return 0


def _figure_cell(row: TrialRow, key: str) -> str:
    if key not in row.figures:
        return "-"
    fig = Figure.from_dict({**row.figures[key], "unit": display_unit(str(row.figures[key].get("unit", "")))})
    if key == "accuracy":
        return f"{fig.value * 100:.1f}% ({fig.kind})"
    return fig.label()


def _verdict_cell(row: TrialRow) -> str:
    if row.fail_reason and not row.verdicts:
        return "failed"
    if not row.verdicts:
        return "stopped early" if row.state == "PRUNED" else row.state.lower()
    over = [b for b, ok in row.verdicts.items() if not ok]
    return "fits" if not over else "over " + "+".join(over)


def _front_cell(report: FrontReport, row: TrialRow) -> str:
    """Where ``row`` stands on the feasible front: knee, on it, equal within error to a front trial, or not."""
    if row.number == report.knee:
        return "knee"
    if row.number in report.front:
        return "yes"
    if row.number in report.within_noise:
        return f"~{report.within_noise[row.number]} (within error)"
    if row.duplicate_of is not None:
        return f"dup of {row.duplicate_of}"
    return ""


def _param(row: TrialRow, name: str) -> str:
    value = row.spec.get(name, row.params.get(name))
    return f"{value:g}" if isinstance(value, float) else str(value) if value is not None else "-"


def render_table(report: FrontReport, rows: list[TrialRow]) -> str:
    """A table of ``rows``: parameters, figures (labelled measured / estimated), verdict per budget."""
    b = report.budgets
    headers = [
        "trial",
        "width",
        "sparsity",
        "precision",
        "accuracy",
        f"latency (budget {b['latency_ms']:,.1f} ms)",
        f"flash (budget {b['flash_kb']:,.1f} KiB)",
        f"SRAM (budget {b['sram_kb']:,.1f} KiB)",
        "verdict",
        "front",
    ]
    body = []
    for r in rows:
        body.append(
            [
                str(r.number),
                _param(r, "width"),
                _param(r, "sparsity"),
                _param(r, "precision"),
                *(_figure_cell(r, key) for key, _ in _FIGURES),
                _verdict_cell(r),
                _front_cell(report, r),
            ]
        )
    return format_table(headers, body)


def render_report(report: FrontReport, *, all_trials: bool = False) -> str:
    """The front (or every trial), then counts, knee and hypervolume, then failure reasons."""
    lines = []
    title = "rechecked against" if report.rechecked else "target"
    lines.append(
        f"study {report.study_name}: {title} {report.target['name']}; objectives: "
        + ", ".join(f"{n} ({d[:3]})" for n, d in zip(report.objectives, report.directions, strict=True))
    )
    states: dict[str, int] = {}
    for r in report.trials:
        states[r.state] = states.get(r.state, 0) + 1
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
    lines.append(
        f"{len(report.trials)} trials ({counts}); {report.feasible_count} feasible; "
        f"{len(report.front)} on the feasible front"
    )
    over = {b: sum(1 for r in report.trials if r.verdicts.get(b) is False) for b in ("flash", "sram", "latency")}
    if any(over.values()):
        lines.append("trials over budget: " + ", ".join(f"{b} {n}" for b, n in over.items()))
    rows = report.trials if all_trials else [report.row(n) for n in report.front]
    if rows:
        lines.append("")
        lines.append(render_table(report, rows))
    lines.append("")
    if report.within_noise:
        merged = ", ".join(f"{a} ~ {b}" for a, b in sorted(report.within_noise.items()))
        lines.append(f"left off the front as equal within measurement error to a front trial: {merged}")
    if report.knee is not None:
        lines.append(
            f"knee: trial {report.knee} (nearest the front's ideal point with each cost in units of its budget)"
        )
    lines.append(f"hypervolume: {report.hypervolume:.4f} of the budget box (accuracy 0-100% x each cost 0-budget)")
    lines.append("sizes in KiB (1 KiB = 1,024 bytes)")
    failed = {r.number: r.fail_reason for r in report.trials if r.fail_reason}
    _reasons(lines, failed, all_trials, "failed or cannot run here; --all lists them with their reasons")
    stopped = {r.number: r.stop_reason for r in report.trials if r.stop_reason}
    _reasons(lines, stopped, all_trials, "were stopped early (they cannot reach the front); --all lists why")
    return "\n".join(lines)


def _reasons(lines: list[str], reasons: dict[int, str], all_trials: bool, summary: str) -> None:
    """Each trial's reason (with --all, or when there are at most 5), else one line counting them."""
    if reasons and (all_trials or len(reasons) <= 5):
        lines.append("")
        lines.extend(f"trial {number}: {reason}" for number, reason in reasons.items())
    elif reasons:
        lines.append(f"{len(reasons)} trials {summary}")


def print_report(report: FrontReport, *, all_trials: bool = False) -> None:
    print(render_report(report, all_trials=all_trials), file=sys.stdout)
