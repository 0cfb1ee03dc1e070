"""Streamlit pieces every page shares: the error boundary, the study picker and the cached front.

Pages are thin scripts; they call :func:`setup` first (session state, working folder) and run
their body inside :func:`boundary`, which turns any :class:`~search.errors.TinyfrontError` into
an ``st.error`` saying what to fix and stops the page (never a traceback).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import streamlit as st

from explorer.app import state
from search.errors import TinyfrontError

if TYPE_CHECKING:
    import optuna

    from search.front import FrontReport

PAGES: dict[str, str] = {
    "search": "pages/search.py",
    "front": "pages/front.py",
    "candidate": "pages/candidate.py",
    "export": "pages/export.py",
}


def setup() -> None:
    """Initialise the shared session state (idempotent; every page calls it)."""
    state.init_session(st.session_state)  # type: ignore[arg-type]  # SessionStateProxy is a MutableMapping at run time


@contextmanager
def boundary() -> Iterator[None]:
    """Show a TinyfrontError as ``st.error`` and stop the page."""
    try:
        yield
    except TinyfrontError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()


@st.cache_resource(max_entries=8, show_spinner=False)
def _cached_study(storage: str, study: str) -> optuna.Study:
    from explorer.app.reading import open_study

    return open_study(storage, study)


def load_report(study: str) -> FrontReport:
    """``study``'s front report; the study object is kept, so re-reads only fetch new and running trials."""
    from explorer.app.reading import read_report

    return read_report(_cached_study(state.storage_url(), study))


def _on_study_change() -> None:
    st.session_state["study"] = st.session_state.get("study_choice")
    st.session_state["trial"] = None
    st.session_state["compare"] = []


def study_picker() -> str | None:
    """The sidebar's study selector; keeps ``st.session_state["study"]`` and returns it."""
    from explorer.app.launcher import list_runs

    with boundary():
        names = state.list_studies(state.storage_url())
    # A search that crashed before creating its study still has a run record (and a log to show).
    names += [n for n in list_runs(state.workdir()) if n not in names]
    if not names:
        st.sidebar.info("No study yet: launch one on the Search page.")
        st.session_state["study"] = None
        return None
    current = st.session_state.get("study")
    if current not in names:
        current = names[0]
        st.session_state["study"] = current
    if st.session_state.get("study_choice") != current:
        st.session_state["study_choice"] = current
    st.sidebar.selectbox("Study", names, key="study_choice", on_change=_on_study_change)
    return str(current)


def require_study() -> str:
    """The chosen study, or an info note and a stopped page when there is none."""
    study = st.session_state.get("study")
    if not study:
        st.info("No study to show yet. Launch a search on the **Search** page first.")
        st.page_link(PAGES["search"], label="Go to Search", icon=":material/rocket_launch:")
        st.stop()
    return str(study)


def finished_trials(report: FrontReport) -> list[int]:
    """Numbers of the trials that finished with figures (the ones a page can open)."""
    return [r.number for r in report.trials if r.state == "COMPLETE" and r.figures]


def trial_picker(report: FrontReport, label: str = "Trial", key: str = "trial_choice") -> int | None:
    """A selectbox of finished trials bound to ``st.session_state["trial"]`` (default: the knee)."""
    numbers = finished_trials(report)
    if not numbers:
        st.info("No finished trial yet: the first one appears when its measurement ends.")
        return None
    current = st.session_state.get("trial")
    if current not in numbers:
        current = report.knee if report.knee in numbers else numbers[0]
        st.session_state["trial"] = current
    if st.session_state.get(key) != current:
        st.session_state[key] = current

    def changed() -> None:
        st.session_state["trial"] = st.session_state[key]

    rows = {r.number: r for r in report.trials}

    def fmt(n: int) -> str:
        row = rows[n]
        mark = " ★ knee" if n == report.knee else (" · front" if n in report.front else "")
        ok = "fits" if row.feasible else "over budget"
        spec = row.spec or row.params
        knobs = f"{spec.get('precision', '?')}, width {spec.get('width', '?')}, sparsity {spec.get('sparsity', '?')}"
        return f"#{n}: {knobs} ({ok}){mark}"

    st.selectbox(label, numbers, key=key, format_func=fmt, on_change=changed)
    return int(current)
