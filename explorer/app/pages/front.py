"""Pareto front page: every finished trial on two chosen axes, re-judged live against the budget sliders."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.app import charts, launcher, state, ui

ui.setup()
st.title("Pareto front")
study = ui.require_study()
record = launcher.read_run(state.workdir(), study)
live = record is not None and launcher.run_status(record).state == "running"


def _slider_range(report_budget: float, values: list[float]) -> tuple[float, float]:
    top = max([report_budget * 2.0] + [v * 1.1 for v in values])
    return 0.0, float(f"{top:.3g}")


@st.fragment(run_every=3.0 if live else None)
def front_view() -> None:
    with ui.boundary():
        report = ui.load_report(study)
    if live:
        st.caption(":material/autorenew: A search is running: the chart refreshes every few seconds.")
    overrides = st.session_state["budget_overrides"].setdefault(study, {})
    st.markdown("**Budgets**: move a slider to re-judge every trial against it (nothing is re-run).")
    budgets: dict[str, float] = {}
    slider_cols = st.columns(4)
    for col, (key, label, unit) in zip(
        slider_cols,
        (("flash_kb", "Flash", "KB"), ("sram_kb", "SRAM", "KB"), ("latency_ms", "Latency", "ms")),
        strict=False,
    ):
        values = [float(r.figures[key]["value"]) for r in report.trials if key in r.figures]
        low, high = _slider_range(report.budgets[key], values)
        low = max(low, high / 1000)
        default = float(min(max(overrides.get(key, report.budgets[key]), low), high))
        budgets[key] = col.slider(
            f"{label} budget ({unit})", min_value=low, max_value=high, value=default, key=f"budget_{study}_{key}"
        )
    overrides.update(budgets)
    if slider_cols[3].button("Reset budgets", key="reset_budgets", help="back to the study's own budgets"):
        for key in budgets:
            st.session_state.pop(f"budget_{study}_{key}", None)
        overrides.clear()
        st.rerun()
    judged = charts.rejudge(report, budgets)
    cols = st.columns([1, 1, 3])
    axes: list[str] = list(charts.AXES)

    def title(name: str) -> str:
        return charts.AXES[name]

    x = cols[0].selectbox("X axis", axes, index=axes.index("latency_ms"), format_func=title, key="front_x")
    y = cols[1].selectbox("Y axis", axes, index=axes.index("accuracy"), format_func=title, key="front_y")
    info = charts.front_info(judged, str(x), str(y))
    target = report.target
    cols[2].markdown(
        f"**{target['name']}** ({target['runtime']}) · {info.finished} finished · **{info.feasible} within budgets** · "
        f"{len(info.front)} on the front · {info.failed} failed · {info.running} running · "
        f"hypervolume {info.hypervolume:.3f}"
    )
    if not info.points:
        st.info("No finished trial yet. The first point appears when its measurement ends.")
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
        "feasible Pareto front, star = knee; marker size grows with sparsity; dashed red lines = budgets."
    )
    rows = [judged.row(n) for n in judged.front]
    if rows:
        st.markdown("**Feasible Pareto front**")
        table = pd.DataFrame(
            [
                {
                    "trial": r.number,
                    "knee": "★" if r.number == judged.knee else "",
                    "precision": (r.spec or r.params).get("precision"),
                    "width": (r.spec or r.params).get("width"),
                    "sparsity": (r.spec or r.params).get("sparsity"),
                    "accuracy": r.figures["accuracy"]["value"],
                    "latency ms": r.figures["latency_ms"]["value"],
                    "flash KB": r.figures["flash_kb"]["value"],
                    "SRAM KB": r.figures["sram_kb"]["value"],
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
                "latency ms": st.column_config.NumberColumn(format="%.2f"),
                "flash KB": st.column_config.NumberColumn(format="%.1f"),
                "SRAM KB": st.column_config.NumberColumn(format="%.1f"),
            },
            key="front_table",
        )
    numbers = [p.number for p in info.points]
    cols = st.columns([2, 1, 3])
    default = judged.knee if judged.knee in numbers else numbers[0]
    chosen = cols[0].selectbox(
        "Open trial", numbers, index=numbers.index(default), key="front_open_choice", label_visibility="collapsed"
    )
    if cols[1].button("Open", key="front_open"):
        st.session_state["trial"] = int(chosen)
        st.switch_page(ui.PAGES["candidate"])


front_view()
