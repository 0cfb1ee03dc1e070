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
    "trials": "pages/trials.py",
    "analysis": "pages/analysis.py",
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


def cached_study(study: str) -> optuna.Study:
    """The long-lived ``optuna.Study`` object of ``study`` (ConfigError when there is no such study)."""
    return _cached_study(state.storage_url(), study)


def study_exists(study: str) -> bool:
    """True when the storage holds a tinyfront study ``study`` (a just-launched search may not have made it yet)."""
    try:
        cached_study(study)
    except TinyfrontError:
        return False
    return True


def load_report(study: str) -> FrontReport:
    """``study``'s front report against its own budgets; re-reads only fetch new and running trials."""
    from explorer.app.reading import read_report

    return read_report(_cached_study(state.storage_url(), study))


def judged_report(study: str) -> FrontReport:
    """``study``'s report judged against this session's budgets: the what-if ones when active.

    Every page that says whether a trial fits reads this, so they all agree.
    """
    from explorer.app.charts import rejudge

    report = load_report(study)
    overrides = state.budget_overrides(st.session_state, study)  # type: ignore[arg-type]
    return rejudge(report, overrides) if overrides else report


def study_budgets(study: str) -> dict[str, float]:
    """``study``'s own budgets (flash_kb, sram_kb in KiB, latency_ms), from its recorded target."""
    from search.result import BUDGETS, budget_of
    from search.targets import Target

    target = Target.from_dict(cached_study(study).user_attrs["target"])
    return {key: budget_of(target, b) for b, key in BUDGETS.items()}


def fmt_budget(key: str, value: float) -> str:
    """``75.0 KiB`` / ``500.0 ms``: one decimal, thousands separated, never scientific notation."""
    return f"{value:,.1f} {state.BUDGET_FIELDS[key][1]}"


def _reset_budgets(study: str) -> None:
    state.clear_budgets(st.session_state, study)  # type: ignore[arg-type]


def what_if_banner() -> None:
    """On every page, while what-if budgets are active for the chosen study: what they are, and one Reset."""
    study = st.session_state.get("study")
    if not study:
        return
    overrides = state.budget_overrides(st.session_state, str(study))  # type: ignore[arg-type]
    if not overrides:
        return
    with boundary():
        own = study_budgets(str(study))
    parts = [
        f"{state.BUDGET_FIELDS[k][0].lower()} **{fmt_budget(k, v)}** (study: {fmt_budget(k, own[k])})"
        for k, v in overrides.items()
    ]
    with st.container(border=True, key="what_if_banner"):
        cols = st.columns([5, 1], vertical_alignment="center")
        cols[0].warning(
            "**What-if budgets active**: " + ", ".join(parts) + ". Every page judges trials against them; "
            "nothing is re-run and the study keeps its own budgets.",
            icon=":material/tune:",
        )
        cols[1].button(
            "Reset budgets",
            key="reset_budgets",
            on_click=_reset_budgets,
            args=(str(study),),
            help="back to the study's own budgets, on every page",
        )


def _budget_changed(study: str, key: str, wkey: str) -> None:
    value = st.session_state.get(wkey)
    own = study_budgets(study)
    try:
        state.set_budget(st.session_state, study, key, float(value), own[key])  # type: ignore[arg-type]
    except (TinyfrontError, TypeError, ValueError) as exc:
        st.session_state["_budget_error"] = str(exc)
        # The refused value is not kept: new inputs show the budgets in force again.
        generations = st.session_state.setdefault("budget_generation", {})
        generations[study] = int(generations.get(study, 0)) + 1
    else:
        st.session_state.pop("_budget_error", None)


def budget_inputs(study: str) -> None:
    """Typed what-if budget inputs, drawn from (and writing to) the session's one budget state.

    Each input is created with ``value=`` the budget in force (the what-if one, else the study's),
    so a page switch or a reset can never bring an old widget value back.
    """
    own = study_budgets(study)
    overrides = state.budget_overrides(st.session_state, study)  # type: ignore[arg-type]
    cols = st.columns(len(state.BUDGET_FIELDS))
    for col, (key, (label, unit)) in zip(cols, state.BUDGET_FIELDS.items(), strict=True):
        wkey = state.budget_key(st.session_state, study, key)  # type: ignore[arg-type]
        col.number_input(
            f"{label} budget ({unit})",
            value=float(overrides.get(key, own[key])),
            step=10.0 if key == "latency_ms" else 16.0,
            format="%.1f",
            key=wkey,
            on_change=_budget_changed,
            args=(study, key, wkey),
            help=f"What if the budget were this? The study's own: {fmt_budget(key, own[key])}. Nothing is re-run.",
        )
    error = st.session_state.pop("_budget_error", None)
    if error:
        st.error(error, icon=":material/error:")


def run_state(study: str) -> str | None:
    """State of ``study``'s background search started from this app (``running``, ``finished``, ...), or None."""
    from explorer.app.launcher import read_run, run_status

    record = read_run(state.workdir(), study)
    return run_status(record).state if record is not None else None


def report_or_wait(study: str) -> FrontReport | None:
    """:func:`judged_report`, or None with a "waiting for the first trial" note while a just-launched
    search has not created its study yet (never a red "no study" error in the first seconds)."""
    from search.errors import ConfigError

    try:
        return judged_report(study)
    except ConfigError as exc:
        if run_state(study) == "running":
            st.info("Waiting for the first trial: the search is starting (this page refreshes by itself).")
            return None
        st.error(str(exc), icon=":material/error:")
        st.stop()
    return None  # pragma: no cover - st.stop() raises


def sync_link() -> None:
    """Keep ``?study=..&trial=..`` in the address bar in step with the session (a shareable deep link)."""
    for key in ("study", "trial"):
        value = st.session_state.get(key)
        if value is None:
            st.query_params.pop(key, None)
        elif st.query_params.get(key) != str(value):
            st.query_params[key] = str(value)


def open_link() -> str | None:
    """Once per browser session: take study, trial and page from the URL's query string; returns the page."""
    if st.session_state.get("_link_opened"):
        return None
    st.session_state["_link_opened"] = True
    link = state.link_params(st.query_params.to_dict())
    if "study" in link:
        st.session_state["study"] = link["study"]
        st.session_state["trial"] = link.get("trial")
    elif "trial" in link and st.session_state.get("study"):
        st.session_state["trial"] = link["trial"]
    page = link.get("page")
    return str(page) if page else None


def _on_study_change() -> None:
    st.session_state["study"] = st.session_state.get("study_choice")
    st.session_state["trial"] = None
    st.session_state["compare"] = []


def study_picker() -> str | None:
    """The sidebar's study selector (status, trial count, start date); keeps ``st.session_state["study"]``."""
    from explorer.app.launcher import list_runs, read_run, run_status

    with boundary():
        summaries = {s.name: s for s in state.study_summaries(state.storage_url())}
    names = list(summaries)
    # A search that crashed before creating its study still has a run record (and a log to show).
    names += [n for n in list_runs(state.workdir()) if n not in summaries]
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
    workdir = state.workdir()

    def fmt(name: str) -> str:
        record = read_run(workdir, name)
        status = run_status(record).state if record else "stored"
        info = summaries.get(name)
        if info is None:
            return f"{name} · {status} · no trials"
        return f"{name} · {status} · {info.trials} trials" + (f" · {info.started}" if info.started else "")

    st.sidebar.selectbox("Study", names, key="study_choice", on_change=_on_study_change, format_func=fmt)
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
    sync_link()
    return int(current)
