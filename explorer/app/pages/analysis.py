"""Analysis page: is the search still improving (hypervolume), which knob matters for which objective
(importances), and how the knobs map to the objectives (parallel coordinates), drawn by Optuna."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from explorer.app import analysis, state, ui

if TYPE_CHECKING:
    import plotly.graph_objects as go


# Optuna redraws from every trial (seconds on 1,000 trials): each figure is kept until a trial finishes.
@st.cache_resource(max_entries=32, show_spinner=False)
def _figure(kind: str, storage: str, study: str, complete: int, objective: str) -> go.Figure:
    loaded = ui.cached_study(study)  # the session's storage: ``storage`` only keys the cache
    info = analysis.analysis_info(loaded)
    if kind == "hypervolume":
        return analysis.hypervolume_figure(loaded, info)
    if kind == "importance":
        return analysis.importance_figure(loaded, info, objective)
    return analysis.parallel_figure(loaded, info, objective)


ui.setup()
st.title("Analysis")
ui.what_if_banner()
study = ui.require_study()
if ui.report_or_wait(study) is None:
    st.stop()
with ui.boundary():
    loaded = ui.cached_study(study)
    info = analysis.analysis_info(loaded)
st.caption(
    f"{info.complete} finished trials, {info.feasible} within the study's own budgets (Optuna reads the budgets "
    "stored with each trial, so what-if budgets do not apply here). All figures are the stored ones: accuracy "
    "measured, latency and sizes as each trial's kind says."
)
if info.complete == 0:
    st.info("Nothing to analyse yet: the first finished trial starts the charts.")
    st.stop()

st.subheader("Hypervolume over trials")
st.caption(
    "Fraction of the budget box (accuracy 0-100 % x every cost from 0 to its budget) that the feasible front "
    "dominates after each trial, as on the Pareto page; drawn by Optuna from the stored figures. A flat line: "
    "the search has stopped improving."
)
with st.spinner("Optuna is computing the hypervolume history..."):
    st.plotly_chart(
        _figure("hypervolume", state.storage_url(), study, info.complete, ""), width="stretch", key="hv_history"
    )


def _title(name: str) -> str:
    return analysis.OBJECTIVE_TITLES.get(name, name)


objective = st.radio("Objective", list(info.objectives), format_func=_title, key="analysis_objective", horizontal=True)
objective = str(objective or info.objectives[0])
left, right = st.columns([2, 3], gap="large")
with left:
    st.subheader("Parameter importance")
    if info.can_rank_params:
        with st.spinner("Ranking parameters (Optuna PED-ANOVA)..."):
            fig = _figure("importance", state.storage_url(), study, info.complete, objective)
            st.plotly_chart(fig, width="stretch", key="importance")
    else:
        st.info("Importances need at least 4 finished trials and a parameter that varied.")
with right:
    st.subheader("Parallel coordinates")
    if info.params:
        with st.spinner("Drawing every trial..."):
            st.plotly_chart(
                _figure("parallel", state.storage_url(), study, info.complete, objective),
                width="stretch",
                key="parallel",
            )
    else:
        st.info("No parameter varied yet.")
