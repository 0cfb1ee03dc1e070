"""Reading a study: every trial, the feasible Pareto front, its knee and its hypervolume.

:func:`load_front` reads the stored trials; :func:`recheck` re-derives flash, SRAM and latency of
every finished trial's stored artifacts for another target (no retraining) and judges them
against that target's budgets. Both return a JSON-serialisable :class:`FrontReport`.

Hypervolume (:func:`budget_hypervolume`): each objective is scaled so that the reference point
is the budget box: accuracy stays a fraction (reference 0), latency / flash / SRAM are divided by
the target's budget (reference 1, i.e. exactly at the budget). The hypervolume is then the
fraction of the box "accuracy 0-1 x every cost 0-budget" that the feasible front dominates: 0 for
no feasible trial, at most 1, and comparable across studies on the same target.
The front is the feasible Pareto front with points equal within measurement error merged
(:func:`search.pareto.thin_within_noise`): an objective's tolerance is its figure's stated
``error_pct`` of the value (at least :data:`NOISE_FLOOR_PCT`: host timing jitter on latency);
accuracy has none (every trial is scored on the same validation samples). A trial dropped that
way is listed in ``FrontReport.within_noise`` with the front trial that covers it.
The knee is :func:`search.pareto.knee_point` with every objective in budget units (accuracy as a
fraction, each cost divided by its budget): the front point nearest to the front's ideal point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from search.errors import ConfigError, TinyfrontError
from search.names import DEFAULT_ARTIFACTS_ROOT, trial_folder
from search.pareto import hypervolume, knee_point, pareto_mask, thin_within_noise
from search.result import BUDGETS, OBJECTIVES, budget_of
from search.storage import fail_reason
from search.targets import Target

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from search.result import CandidateResult

_BUDGET_OF_FIGURE = {figure: budget for budget, figure in BUDGETS.items()}
#: Smallest relative difference (in %) that counts as real, per objective, when a figure states no
#: larger error: latency p50 on a shared host jitters by about 1 %; byte counts are exact.
NOISE_FLOOR_PCT: dict[str, float] = {"latency_ms": 1.0}


@dataclass
class TrialRow:
    """One trial as the front report shows it."""

    number: int
    state: str
    params: dict[str, Any]
    values: dict[str, float]
    figures: dict[str, dict[str, Any]]
    verdicts: dict[str, bool]
    feasible: bool
    fail_reason: str | None
    artifacts_dir: str | None
    reused_base: bool | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    duplicate_of: int | None = None  # served from that earlier trial with the same candidate
    stop_reason: str | None = None  # why a PRUNED trial was stopped early (search.early_stop)


@dataclass
class FrontReport:
    """All trials of a study judged against one target, the feasible front, its knee and hypervolume."""

    study_name: str
    target: dict[str, Any]
    objectives: list[str]
    directions: list[str]
    budgets: dict[str, float]
    trials: list[TrialRow]
    front: list[int] = field(default_factory=list)
    knee: int | None = None
    hypervolume: float = 0.0
    hypervolume_reference: dict[str, float] = field(default_factory=dict)
    rechecked: bool = False
    within_noise: dict[int, int] = field(default_factory=dict)  # left off the front -> front trial covering it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def row(self, number: int) -> TrialRow:
        for r in self.trials:
            if r.number == number:
                return r
        raise KeyError(f"no trial {number} in study '{self.study_name}'")

    @property
    def feasible_count(self) -> int:
        return sum(r.feasible for r in self.trials)


def budget_hypervolume(
    points: np.ndarray | Sequence[Sequence[float]], objectives: Sequence[str], target: Target
) -> float:
    """Hypervolume of ``points`` (raw objective values, one column per objective) in the budget box."""
    arr = np.asarray(points, dtype=float).reshape(-1, len(objectives))
    scaled = arr.copy()
    for j, name in enumerate(objectives):
        if name != "accuracy":
            scaled[:, j] = arr[:, j] / budget_of(target, _BUDGET_OF_FIGURE[name])
    reference = [0.0 if name == "accuracy" else 1.0 for name in objectives]
    return hypervolume(scaled, [OBJECTIVES[n] for n in objectives], reference)


def open_study(storage: str, study_name: str) -> Any:
    """``study_name`` in ``storage``; ConfigError naming the studies there when it is missing or not tinyfront's."""
    import optuna

    from search.storage import load_existing_study  # read-only: creates no file, table or study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_existing_study(storage, study_name)
    if "target" not in study.user_attrs:
        raise ConfigError(f"study '{study_name}' was not created by tinyfront (no target recorded)")
    return study


def _same_hardware(a: Target, b: Target) -> bool:
    keys = ("core", "clock_mhz", "runtime", "host_scale")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def _row(trial: FrozenTrial, objectives: Sequence[str], target: Target, result: dict[str, Any] | None) -> TrialRow:
    figures: dict[str, dict[str, Any]] = dict(result["figures"]) if result else {}
    verdicts = (
        {b: figures[key]["value"] <= budget_of(target, b) for b, key in BUDGETS.items() if key in figures}
        if figures
        else {}
    )
    complete = trial.state.name == "COMPLETE" and bool(figures)
    return TrialRow(
        number=trial.number,
        state=trial.state.name,
        params=dict(trial.params),
        values={n: float(figures[n]["value"]) for n in objectives if n in figures},
        figures=figures,
        verdicts=verdicts,
        feasible=complete and len(verdicts) == len(BUDGETS) and all(verdicts.values()),
        fail_reason=fail_reason(trial),
        artifacts_dir=trial.user_attrs.get("artifacts_dir"),
        reused_base=trial.user_attrs.get("reused_base"),
        spec=dict(trial.user_attrs.get("spec", {})),
        duplicate_of=trial.user_attrs.get("duplicate_of"),
        stop_reason=trial.user_attrs.get("stop_reason") if trial.state.name == "PRUNED" else None,
    )


def objective_scale(objectives: Sequence[str], target: Target) -> list[float]:
    """One unit per objective for comparing them: 1 for accuracy (a fraction), the budget for a cost."""
    return [1.0 if n == "accuracy" else budget_of(target, _BUDGET_OF_FIGURE[n]) for n in objectives]


def tolerance_of(row: TrialRow, objectives: Sequence[str]) -> list[float]:
    """Absolute measurement tolerance of ``row``'s objectives (see the module docstring)."""
    out = []
    for n in objectives:
        fig = row.figures.get(n, {})
        pct = max(float(fig.get("error_pct") or 0.0), NOISE_FLOOR_PCT.get(n, 0.0))
        out.append(0.0 if n == "accuracy" else abs(float(row.values[n])) * pct / 100.0)
    return out


def judge_front(report: FrontReport, target: Target) -> FrontReport:
    """Fill ``report``'s feasible Pareto front (duplicates and within-noise repeats left out), knee and hypervolume."""
    # A duplicate repeats its original's figures: the front lists the original only.
    feasible = [
        r for r in report.trials if r.feasible and r.duplicate_of is None and len(r.values) == len(report.objectives)
    ]
    report.hypervolume_reference = {n: (0.0 if n == "accuracy" else 1.0) for n in report.objectives}
    report.within_noise = {}
    if not feasible:
        return report
    points = np.array([[r.values[n] for n in report.objectives] for r in feasible])
    mask = pareto_mask(points, report.directions)
    front = [r for r, keep in zip(feasible, mask, strict=True) if keep]
    scale = np.array(objective_scale(report.objectives, target))
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in report.directions])
    front_points = np.array([[r.values[n] for n in report.objectives] for r in front])
    rank = ((front_points * signs) / scale).sum(axis=1)
    dropped = thin_within_noise(
        front_points, report.directions, [tolerance_of(r, report.objectives) for r in front], rank=rank
    )
    report.within_noise = {front[i].number: front[j].number for i, j in dropped.items()}
    front = [r for i, r in enumerate(front) if i not in dropped]
    front.sort(
        key=lambda r: tuple(-r.values[n] if OBJECTIVES[n] == "maximize" else r.values[n] for n in report.objectives)
    )
    report.front = [r.number for r in front]
    front_points = np.array([[r.values[n] for n in report.objectives] for r in front])
    knee = knee_point(front_points, report.directions, scale=list(scale))
    report.knee = front[knee].number if knee is not None else None
    report.hypervolume = budget_hypervolume(front_points, report.objectives, target)
    return report


def load_front(storage: str, study_name: str, target: Target | None = None) -> FrontReport:
    """The study's trials and feasible front, judged against its own target or ``target``'s budgets.

    ``target`` must be the same hardware (core, clock, runtime, host scale) with other budgets;
    for another board use :func:`recheck`, which re-measures the stored artifacts.
    """
    return report_from_study(open_study(storage, study_name), target)


def report_from_study(study: Any, target: Target | None = None) -> FrontReport:
    """:func:`load_front` for an already opened ``optuna.Study`` (the app keeps one open and re-reads it)."""
    attrs = study.user_attrs
    own = Target.from_dict(attrs["target"])
    if target is not None and not _same_hardware(own, target):
        raise ConfigError(
            f"target '{target.name}' is other hardware than the study's target '{own.name}'; its figures must be "
            f"re-derived: use `tinyfront recheck --study {study.study_name} --target {target.name}`"
        )
    judge = target or own
    objectives = list(attrs["objectives"])
    rows = [_row(t, objectives, judge, t.user_attrs.get("result")) for t in study.get_trials(deepcopy=False)]
    report = FrontReport(
        study_name=study.study_name,
        target=judge.to_dict(),
        objectives=objectives,
        directions=[OBJECTIVES[n] for n in objectives],
        budgets=_budgets(judge),
        trials=rows,
    )
    return judge_front(report, judge)


def _budgets(target: Target) -> dict[str, float]:
    return {key: budget_of(target, b) for b, key in BUDGETS.items()}


def recheck(storage: str, study_name: str, target: Target) -> FrontReport:
    """Re-derive flash, SRAM, latency and verdicts of every finished trial's artifacts for ``target``.

    Nothing is retrained; accuracy is the stored one (see ``search.candidate.remeasure``). A trial
    whose artifact cannot run on ``target`` (e.g. float16 on TFLite Micro) is listed as infeasible
    with the reason.
    """
    from search.candidate import remeasure

    study = open_study(storage, study_name)
    objectives = list(study.user_attrs["objectives"])
    root = study.user_attrs.get("artifacts_root")
    rows: list[TrialRow] = []
    for trial in study.get_trials(deepcopy=False):
        result: CandidateResult | None = None
        reason: str | None = None
        if trial.state.name == "COMPLETE" and trial.user_attrs.get("artifacts_dir"):
            try:
                folder = trial_folder(trial.user_attrs["artifacts_dir"], study_name, root, DEFAULT_ARTIFACTS_ROOT)
            except TinyfrontError as exc:
                reason = f"not rechecked, its artifacts are gone: {exc}"
            else:
                try:
                    result = remeasure(folder, target)
                except TinyfrontError as exc:
                    reason = f"not deployable on {target.name}: {exc}"
        row = _row(trial, objectives, target, result.to_dict() if result else None)
        if reason is not None:
            row.fail_reason = reason
        rows.append(row)
    report = FrontReport(
        study_name=study_name,
        target=target.to_dict(),
        objectives=objectives,
        directions=[OBJECTIVES[n] for n in objectives],
        budgets=_budgets(target),
        trials=rows,
        rechecked=True,
    )
    return judge_front(report, target)
