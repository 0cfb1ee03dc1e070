"""Reading a study for the app: one long-lived Optuna study object per study, re-read incrementally.

:func:`search.front.load_front` opens a new storage on every call and so decodes every trial again
(about 5 s for 1,000 trials on a busy 2-core machine). The app instead keeps the ``optuna.Study``
(``ui`` caches it per session-independent key): Optuna's storage cache keeps finished trials, so a
re-read while a search runs only fetches new and running trials (milliseconds). The report is built
by :func:`search.front.report_from_study`, the same code as ``load_front``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search.front import FrontReport, open_study, report_from_study

if TYPE_CHECKING:
    import optuna

__all__ = ["open_study", "read_report"]


def read_report(study: optuna.Study) -> FrontReport:
    """Every trial of ``study`` judged against the study's own target, with its feasible front and knee."""
    return report_from_study(study)
