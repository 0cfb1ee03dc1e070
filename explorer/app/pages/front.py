"""Pareto front page: every finished trial on two chosen axes, judged against the session's budgets.

The what-if budget inputs write the session's one budget state (``ui.budget_inputs``); every page
reads it, and the banner on top of every page says when it differs from the study's budgets.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.app import charts, ui

ui.setup()
st.title("Pareto front")
ui.what_if_banner()
study = ui.require_study()
live = ui.run_state(study) == "running"

st.markdown("**What-if budgets**: type a budget to re-judge every trial against it, on every page (nothing is re-run).")
with ui.boundary():
    if not live or ui.study_exists(study):
        ui.budget_inputs(study)

axes: list[str] = list(charts.AXES)


def _title(name: str) -> str:
    return charts.AXES[name]


cols = st.columns([2, 2, 3])
x = str(cols[0].selectbox("X axis", axes, index=axes.index("latency_ms"), format_func=_title, key="front_x"))
y_choices = [a for a in axes if a != x]
if st.session_state.get("front_y") not in y_choices:
    st.session_state["front_y"] = "accuracy" if x != "accuracy" else "latency_ms"
y = str(cols[1].selectbox("Y axis", y_choices, format_func=_title, key="front_y"))
with cols[2]:
    opts = st.columns([3, 2, 2])
    to_budget = opts[0].toggle("To budgets", key="front_to_budget", help="extend the axes to the budget lines")
    log_x = opts[1].toggle("Log X", key="front_log_x")
    log_y = opts[2].toggle("Log Y", key="front_log_y")


@st.fragment(run_every=3.0 if live else None)
def front_view() -> None:
    if live and ui.run_state(study) != "running":
        st.rerun(scope="app")  # the search ended: stop refreshing and drop the "running" note
    report = ui.report_or_wait(study)
    if report is None:
        return
    if live:
        st.caption(":material/autorenew: A search is running: the chart refreshes every few seconds.")
    with ui.boundary():
        info = charts.front_info(report, x, y, to_budget=to_budget, log_x=log_x, log_y=log_y)
    target = report.target
    st.markdown(
        f"**{target['name']}** ({target['runtime']}) · {info.finished} finished · **{info.feasible} within budgets** · "
        f"{len(info.front)} on the front · {info.failed} failed · {info.running} running · "
        f"hypervolume {info.hypervolume:.3f}"
    )
    if not info.points:
        if live:
            st.info("Waiting for the first trial: the first point appears when its measurement ends.")
        else:
            st.info(f"No finished trial in this study (its search is {ui.run_state(study) or 'not running'}).")
        return
    fig = charts.front_figure(info, selected=st.session_state.get("trial"))
    event = st.plotly_chart(
        fig, key=f"front_chart_{study}", on_select="rerun", selection_mode="points", width="stretch"
    )
    picked = [p.get("customdata", [None])[0] for p in (event.selection.points if event else [])]
    picked = [int(n) for n in picked if n is not None]
    if not picked:
        st.session_state.pop("_front_last_pick", None)
    elif picked[0] != st.session_state.get("_front_last_pick"):
        st.session_state["_front_last_pick"] = picked[0]
        st.session_state["trial"] = picked[0]
        st.switch_page(ui.PAGES["candidate"])
    st.caption(
        "Click a point to open it. Filled = within every budget, open = over a budget, black ring = on the "
        "feasible Pareto front, star = knee (nearest the ideal point, each cost in units of its budget); "
        "marker size grows with sparsity; dashed red lines = budgets. Latency is estimated, sizes measured "
        "or estimated as each trial's hover says."
    )
    if report.within_noise:
        merged = ", ".join(f"#{a} ≈ #{b}" for a, b in sorted(report.within_noise.items()))
        st.caption(f"Left off the front as equal within measurement error to a front trial: {merged}.")
    rows = [report.row(n) for n in report.front]
    if rows:
        st.markdown("**Feasible Pareto front**")
        table = pd.DataFrame(
            [
                {
                    "trial": r.number,
                    "knee": "★" if r.number == report.knee else "",
                    "precision": (r.spec or r.params).get("precision"),
                    "width": (r.spec or r.params).get("width"),
                    "sparsity": (r.spec or r.params).get("sparsity"),
                    "accuracy": r.figures["accuracy"]["value"],
                    "latency ms": r.figures["latency_ms"]["value"],
                    "flash KiB": r.figures["flash_kb"]["value"],
                    "SRAM KiB": r.figures["sram_kb"]["value"],
                }
                for r in rows
            ]
        )
        st.dataframe(
            table,
            hide_index=True,
            width="stretch",
            column_config={
                "accuracy": st.column_config.NumberColumn(format="percent"),
                "latency ms": st.column_config.NumberColumn(format="%.3f"),
                "flash KiB": st.column_config.NumberColumn(format="%.1f"),
                "SRAM KiB": st.column_config.NumberColumn(format="%.1f"),
            },
            key="front_table",
        )
    numbers = [p.number for p in info.points]
    cols = st.columns([2, 1, 3])
    default = report.knee if report.knee in numbers else numbers[0]
    chosen = cols[0].selectbox(
        "Open trial", numbers, index=numbers.index(default), key="front_open_choice", label_visibility="collapsed"
    )
    if cols[1].button("Open", key="front_open"):
        st.session_state["trial"] = int(chosen)
        st.switch_page(ui.PAGES["candidate"])


front_view()
