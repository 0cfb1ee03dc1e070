"""Reading a study for the app: one long-lived Optuna study object per study, re-read incrementally.

:func:`search.front.load_front` opens a new storage on every call and so decodes every trial again
(about 5 s for 1,000 trials on a busy 2-core machine). The app instead keeps the ``optuna.Study``
(``ui`` caches it per session-independent key): Optuna's storage cache keeps finished trials, so a
re-read while a search runs only fetches new and running trials (milliseconds). The report is built
with the same row logic as ``load_front`` and judged by :func:`explorer.app.charts.rejudge`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search.errors import ConfigError
from search.front import FrontReport, _row
from search.result import BUDGETS, OBJECTIVES, budget_of
from search.targets import Target

if TYPE_CHECKING:
    import optuna


def open_study(storage: str, study_name: str) -> optuna.Study:
    """``study_name`` in ``storage``; ConfigError naming the studies there when it is missing or not tinyfront's."""
    import optuna

    from search.storage import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = make_storage(storage)
    try:
        study = optuna.load_study(study_name=study_name, storage=st)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(st)) or "none"
        raise ConfigError(f"no study '{study_name}' in the storage; studies there: {names}") from None
    if "target" not in study.user_attrs:
        raise ConfigError(f"study '{study_name}' was not created by tinyfront (no target recorded); pick another")
    return study


def read_report(study: optuna.Study) -> FrontReport:
    """Every trial of ``study`` judged against the study's own target, with its feasible front and knee."""
    from explorer.app.charts import rejudge

    attrs = study.user_attrs
    target = Target.from_dict(attrs["target"])
    objectives = list(attrs["objectives"])
    rows = [_row(t, objectives, target, t.user_attrs.get("result")) for t in study.get_trials(deepcopy=False)]
    report = FrontReport(
        study_name=study.study_name,
        target=target.to_dict(),
        objectives=objectives,
        directions=[OBJECTIVES[n] for n in objectives],
        budgets={key: budget_of(target, b) for b, key in BUDGETS.items()},
        trials=rows,
        hypervolume_reference={n: (0.0 if n == "accuracy" else 1.0) for n in objectives},
    )
    return rejudge(report, {})
