"""Entry script of the tinyfront app: page config, deep links, the study picker, the what-if banner, navigation.

A link ``?study=<name>&trial=<N>&page=<front|trials|analysis|candidate|export>`` (or the page's own
path, e.g. ``/candidate?study=..&trial=..``) opens the same view for a colleague; the address bar
follows the session's study and trial.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from explorer.app import state, ui

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="tinyfront", page_icon=":material/memory:", layout="wide")
ui.setup()
linked_page = ui.open_link()
pages = {
    "search": st.Page(HERE / ui.PAGES["search"], title="Search", icon=":material/rocket_launch:", default=True),
    "front": st.Page(HERE / ui.PAGES["front"], title="Pareto front", icon=":material/scatter_plot:"),
    "trials": st.Page(HERE / ui.PAGES["trials"], title="All trials", icon=":material/table_rows:"),
    "analysis": st.Page(HERE / ui.PAGES["analysis"], title="Analysis", icon=":material/monitoring:"),
    "candidate": st.Page(HERE / ui.PAGES["candidate"], title="Candidate", icon=":material/memory:"),
    "export": st.Page(HERE / ui.PAGES["export"], title="Export", icon=":material/download:"),
}
navigation = st.navigation(list(pages.values()))
if linked_page is not None and linked_page in pages and navigation is not pages[linked_page]:
    st.query_params.pop("page", None)
    st.switch_page(pages[linked_page])
st.sidebar.markdown("### tinyfront")
ui.study_picker()
st.sidebar.caption(f"Working folder: `{state.workdir()}`")
st.sidebar.caption("Sizes in KiB (1 KiB = 1,024 bytes).")
ui.sync_link()
navigation.run()
