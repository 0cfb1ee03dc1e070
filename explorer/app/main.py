"""Entry script of the tinyfront app: page config, the study picker, and navigation between the pages."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from explorer.app import state, ui

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="tinyfront", page_icon=":material/memory:", layout="wide")
ui.setup()
navigation = st.navigation(
    [
        st.Page(HERE / ui.PAGES["search"], title="Search", icon=":material/rocket_launch:", default=True),
        st.Page(HERE / ui.PAGES["front"], title="Pareto front", icon=":material/scatter_plot:"),
        st.Page(HERE / ui.PAGES["candidate"], title="Candidate", icon=":material/memory:"),
        st.Page(HERE / ui.PAGES["export"], title="Export", icon=":material/download:"),
    ]
)
st.sidebar.markdown("### tinyfront")
ui.study_picker()
st.sidebar.caption(f"Working folder: `{state.workdir()}`")
navigation.run()
