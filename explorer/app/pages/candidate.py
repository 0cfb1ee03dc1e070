"""Candidate page: one trial's figures against its budgets, its layers and sparsity, and a side-by-side comparison."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.app import charts, state, tables, ui

ui.setup()
st.title("Candidate")
ui.what_if_banner()
study = ui.require_study()
report = ui.report_or_wait(study)  # judged against the session's budgets (what-if ones when active)
if report is None:
    st.stop()
number = ui.trial_picker(report)
if number is None:
    st.stop()
row = report.row(number)
spec = row.spec or row.params
figs = row.figures
badge = ":green-badge[fits every budget]" if row.feasible else ":red-badge[over budget]"
extra = (
    " :orange-badge[★ knee]"
    if number == report.knee
    else (" :blue-badge[on the front]" if number in report.front else "")
)
st.markdown(
    f"### Trial {number} · {spec.get('family', '')} width {spec.get('width')} · sparsity "
    f"{float(spec.get('sparsity', 0)):.0%} · {spec.get('precision')}  {badge}{extra}"
)
st.caption(f"Target **{report.target['name']}** ({report.target['runtime']}), artifacts `{row.artifacts_dir}`")

left, right = st.columns([3, 2], gap="large")
with left:
    st.markdown("**Against the budgets**")
    bars = charts.budget_bars(figs, report.budgets)
    st.plotly_chart(charts.budget_figure(bars), width="stretch", key="budget_bars")
with right:
    acc, keras_acc = figs.get("accuracy"), figs.get("keras_accuracy")
    cols = st.columns(2)
    if acc:
        delta = f"{(acc['value'] - keras_acc['value']) * 100:+.2f} pts vs before conversion" if keras_acc else None
        cols[0].metric("Accuracy (deployed)", f"{acc['value'] * 100:.2f} %", delta=delta, help=acc.get("method"))
    if keras_acc:
        cols[1].metric("Before conversion", f"{keras_acc['value'] * 100:.2f} %", help=keras_acc.get("method"))
    cols = st.columns(2)
    for col, key, label in ((cols[0], "latency_ms", "Latency p50"), (cols[1], "latency_p99_ms", "Latency p99")):
        fig = figs.get(key)
        if fig:
            col.metric(label, f"{fig['value']:,.2f} ms", help=fig.get("method"))
            col.caption(tables.fmt_kind(fig))
        else:
            col.metric(label, "n/a")
            col.caption("not available: the board latency is estimated from a per-layer model (p50 only)")

st.markdown("**All figures**")
st.dataframe(tables.figures_table(figs, report.budgets), hide_index=True, width="stretch", key="figures")

left, right = st.columns([2, 3], gap="large")
with left:
    st.markdown("**Sparsity: what it really saves**")
    result = None
    if row.artifacts_dir:
        from search.candidate import load_result
        from search.errors import TinyfrontError
        from search.names import trial_folder

        try:
            root = ui.cached_study(study).user_attrs.get("artifacts_root")
            result = load_result(trial_folder(row.artifacts_dir, study, root, state.artifacts_root()))
        except TinyfrontError as exc:
            st.caption(f"Artifacts unreadable: {exc}")
    sparsity = result.sparsity if result is not None else {}
    if not sparsity:
        st.caption("No sparsity record for this trial.")
    for label, text in tables.sparsity_rows(sparsity).items() if sparsity else ():
        st.markdown(f"- {label}: **{text}**")
    if sparsity.get("note"):
        st.caption(sparsity["note"])
with right:
    st.markdown("**Layers of the deployed model**")
    layers = result.layers if result is not None else []
    if layers:
        table = tables.layers_table(layers, report.target)
        st.dataframe(
            table,
            hide_index=True,
            width="stretch",
            height=36 * (len(table) + 1) + 2,  # every layer, no inner scroll
            key="layers",
            column_config={
                "MACs share": st.column_config.NumberColumn(format="percent"),
                "weight share": st.column_config.NumberColumn(format="percent"),
                "latency share": st.column_config.NumberColumn(format="percent"),
                "est. latency ms": st.column_config.NumberColumn(format="%.3f"),
            },
        )
        st.caption(
            "Per-layer latency is estimated by the board's per-layer cost model (its sum is the board estimate); "
            "MACs and weight bytes are read from the deployed model."
            if table["est. latency ms"].notna().any()
            else "Per-layer latency: not modelled for this target (its latency is timed on this host as a whole)."
        )
    else:
        st.caption("No per-layer table recorded for this trial.")

st.divider()
st.markdown("**Compare candidates** (two or three)")
numbers = ui.finished_trials(report)
default = st.session_state.get("compare") or [n for n in [number, report.knee] if n is not None]
default = list(dict.fromkeys(n for n in default if n in numbers))[:3]
chosen = st.multiselect("Trials to compare", numbers, default=default, max_selections=3, key="compare_choice")
st.session_state["compare"] = list(chosen)
if len(chosen) >= 2:
    compared = tables.compare_table([report.row(n) for n in chosen], report.budgets)
    differ = tables.differing_rows(compared)

    def _highlight(row: pd.Series) -> list[str]:
        return ["background-color: #fff3cd; font-weight: 600" if row.name in differ else "" for _ in row]

    st.dataframe(
        compared.style.apply(_highlight, axis=1),
        width="stretch",
        height=36 * (len(compared) + 1) + 2,
        key="compare_table",
    )
    st.caption(f"Highlighted: the {len(differ)} rows where the candidates differ.")
else:
    st.caption("Pick at least two trials.")
st.page_link(ui.PAGES["export"], label=f"Export trial {number}", icon=":material/download:")
