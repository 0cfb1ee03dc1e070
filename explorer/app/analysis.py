"""The analysis Optuna users expect, drawn by ``optuna.visualization`` itself on the study.

- :func:`analysis_info` -> :class:`AnalysisInfo`: what the Analysis page can show (objectives and
  their directions, the hypervolume reference point, the searched parameters, how many trials
  finished and fit), tested on its own;
- :func:`hypervolume_figure`: ``optuna.visualization.plot_hypervolume_history`` with the budget box
  as reference point (accuracy 0, each cost at its budget, the study's own budgets since Optuna
  reads each trial's stored constraints). Optuna's value is in the objectives' units (accuracy x
  ms x KiB); the figure shows it divided by the product of the cost budgets, i.e. as the
  fraction of the budget box the Pareto page reports;
- :func:`importance_figure`: ``plot_param_importances`` for one objective (``target=``,
  ``target_name=``) with Optuna's PED-ANOVA evaluator (which parameter values the best 10 % of
  trials for that objective need; 0.3 s on 1,000 trials where fANOVA's forest takes ~13 s on this
  2-core machine, with the same ranking on the benchmark study);
- :func:`parallel_figure`: ``plot_parallel_coordinate`` of width / sparsity / precision against
  one objective, on the latest :data:`PARALLEL_MAX` finished trials (Optuna draws one line per
  trial: 1,000 lines take ~10 s and 430 KB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from search.errors import ConfigError
from search.result import BUDGETS, OBJECTIVES, budget_of
from search.targets import Target

if TYPE_CHECKING:
    import optuna
    import plotly.graph_objects as go

_BUDGET_OF_FIGURE = {figure: budget for budget, figure in BUDGETS.items()}
#: Most trials the parallel-coordinates chart draws (the latest ones).
PARALLEL_MAX = 300
OBJECTIVE_TITLES: dict[str, str] = {
    "accuracy": "accuracy (fraction)",
    "latency_ms": "latency p50 (ms)",
    "flash_kb": "flash (KiB)",
    "sram_kb": "SRAM (KiB)",
}


@dataclass(frozen=True)
class AnalysisInfo:
    """What the Analysis page can draw for one study."""

    study_name: str
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    reference: tuple[float, ...]  # hypervolume reference point, in objective order
    box: float  # product of the cost budgets: Optuna's hypervolume / box = fraction of the budget box
    params: tuple[str, ...]  # searched parameters that vary
    complete: int
    feasible: int

    @property
    def can_rank_params(self) -> bool:
        """Importances need a few finished trials and at least one parameter that varied."""
        return self.complete >= 4 and bool(self.params)


def analysis_info(study: optuna.Study) -> AnalysisInfo:
    """What :func:`hypervolume_figure`, :func:`importance_figure` and :func:`parallel_figure` will use."""
    from optuna.trial import TrialState

    attrs = study.user_attrs
    objectives = tuple(attrs["objectives"])
    target = Target.from_dict(attrs["target"])
    reference = tuple(0.0 if n == "accuracy" else budget_of(target, _BUDGET_OF_FIGURE[n]) for n in objectives)
    box = math.prod(r for n, r in zip(objectives, reference, strict=True) if n != "accuracy")
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    feasible = sum(bool(t.constraints) and all(v <= 0 for v in t.constraints.values()) for t in trials)
    seen: dict[str, set[str]] = {}
    for t in trials:
        for name, value in t.params.items():
            seen.setdefault(name, set()).add(repr(value))
    params = tuple(n for n in ("width", "sparsity", "precision") if len(seen.get(n, ())) > 1)
    params += tuple(sorted(n for n, v in seen.items() if len(v) > 1 and n not in params))
    return AnalysisInfo(
        study_name=study.study_name,
        objectives=objectives,
        directions=tuple(OBJECTIVES[n] for n in objectives),
        reference=reference,
        box=box,
        params=params,
        complete=len(trials),
        feasible=feasible,
    )


def light_study(study: optuna.Study, last: int | None = None) -> optuna.Study:
    """An in-memory copy of ``study``'s finished trials (the ``last`` ones) without their user attributes.

    Optuna's plots deep-copy every trial; a tinyfront trial carries its whole result (figures,
    layers) as a user attribute, which makes that copy the slow part. Values, parameters and the
    constraints (a system attribute) are kept, so the plots draw exactly the same thing.
    """
    import copy

    import optuna
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if last is not None:
        trials = trials[-last:]
    light = []
    for t in trials:
        bare = copy.copy(t)
        bare._user_attrs = {}
        light.append(bare)
    shown = optuna.create_study(directions=study.directions, study_name=study.study_name)
    shown.add_trials(light)
    return shown


def _objective_index(info: AnalysisInfo, objective: str) -> int:
    if objective not in info.objectives:
        raise ConfigError(
            f"'{objective}' is not an objective of study '{info.study_name}': {', '.join(info.objectives)}"
        )
    return info.objectives.index(objective)


def hypervolume_figure(study: optuna.Study, info: AnalysisInfo) -> go.Figure:
    """Optuna's hypervolume history against the budget box (see the module docstring)."""
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import plot_hypervolume_history

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # stable enough for a chart; the page says what it is
        fig = plot_hypervolume_history(light_study(study), list(info.reference))
    # Optuna's volume is in accuracy x ms x KiB; shown as the fraction of the budget box it is the
    # Pareto page's hypervolume (same reference point), which a reader can compare across studies.
    for trace in fig.data:
        if trace.y is not None and info.box > 0:
            trace.y = [float(v) / info.box for v in trace.y]
    fig.update_layout(
        title=None,
        yaxis_title="hypervolume (fraction of the budget box)",
        height=380,
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
    )
    fig.update_xaxes(dtick=1 if info.complete <= 20 else None, tickformat="d")
    return fig


def importance_figure(study: optuna.Study, info: AnalysisInfo, objective: str) -> go.Figure:
    """Optuna's parameter importances (fANOVA) for ``objective``."""
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization import plot_param_importances

    i = _objective_index(info, objective)
    sign = -1.0 if info.directions[i] == "maximize" else 1.0  # PED-ANOVA takes lower as better
    fig = plot_param_importances(
        light_study(study),
        evaluator=PedAnovaImportanceEvaluator(),
        params=list(info.params),
        target=lambda t: sign * float(t.values[i]),
        target_name=OBJECTIVE_TITLES.get(objective, objective),
    )
    fig.update_layout(
        title=None, height=60 + 45 * max(len(info.params), 1), margin={"l": 10, "r": 10, "t": 20, "b": 10}
    )
    return fig


def parallel_figure(study: optuna.Study, info: AnalysisInfo, objective: str) -> go.Figure:
    """Optuna's parallel coordinates of the searched parameters against ``objective``."""
    from optuna.visualization import plot_parallel_coordinate

    i = _objective_index(info, objective)
    fig = plot_parallel_coordinate(
        light_study(study, last=PARALLEL_MAX),
        params=list(info.params),
        target=lambda t: float(t.values[i]),
        target_name=OBJECTIVE_TITLES.get(objective, objective),
    )
    fig.update_layout(title=None, height=420, margin={"l": 40, "r": 40, "t": 40, "b": 10})
    return fig
