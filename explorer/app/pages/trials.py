"""All trials page: every trial in one sortable, filterable table; click a row to open the candidate."""

from __future__ import annotations

import streamlit as st

from explorer.app import tables, ui

ui.setup()
st.title("All trials")
ui.what_if_banner()
study = ui.require_study()
report = ui.report_or_wait(study)  # judged against the session's budgets, as on every page
if report is None:
    st.stop()
table = tables.trials_table(report)
FILTERS = {"all": "All", "front": "On the front", "fits": "Fits", "over": "Over budget", "failed": "Failed"}


def _label(key: str) -> str:
    return FILTERS[key]


cols = st.columns([3, 2])
show = cols[0].radio("Show", list(FILTERS), format_func=_label, key="trials_show", horizontal=True)
text = cols[1].text_input("Filter", key="trials_text", placeholder="int8, over flash, FAIL ...")
shown = tables.filter_trials(table, str(show or "all"), text)
counts = table["state"].value_counts().to_dict()
st.caption(
    f"{len(shown)} of {len(table)} trials shown ({', '.join(f'{n} {s.lower()}' for s, n in counts.items())}). "
    "Click a column title to sort, a row to open the trial. Figures are numbers (sortable); the kinds column says "
    "which are measured here and which are estimated (with the estimator's error)."
)
event = st.dataframe(
    shown,
    hide_index=True,
    width="stretch",
    height=min(36 * (len(shown) + 1) + 2, 640),
    on_select="rerun",
    selection_mode="single-row",
    key=f"trials_table_{study}",
    column_config={
        "accuracy": st.column_config.NumberColumn(format="percent"),
        "latency p50 (ms)": st.column_config.NumberColumn(format="%.3f"),
        "flash (KiB)": st.column_config.NumberColumn(format="%.1f"),
        "SRAM (KiB)": st.column_config.NumberColumn(format="%.1f"),
        "sparsity": st.column_config.NumberColumn(format="percent"),
        "width": st.column_config.NumberColumn(format="%.2f"),
        "verdict": st.column_config.TextColumn(width="medium"),
        "kinds": st.column_config.TextColumn(width="large"),
    },
)
picked = event.selection.rows if event is not None else []
if picked:
    row = shown.iloc[int(picked[0])]
    number = int(row["trial"])
    if row["state"] == "COMPLETE" and report.row(number).figures:
        st.session_state["trial"] = number
        st.switch_page(ui.PAGES["candidate"])
    else:
        st.info(f"Trial {number} has no figures to open ({row['verdict']}).")
