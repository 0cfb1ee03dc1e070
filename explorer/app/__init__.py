"""The tinyfront explorer: a Streamlit app (``tinyfront app``) to launch searches, read the front and export.

``main.py`` is the entry script (``st.navigation`` over the scripts in ``pages/``); the logic the
pages use lives in importable modules: :mod:`explorer.app.state` (working folder, storage, checks),
:mod:`explorer.app.forms` (the search form), :mod:`explorer.app.launcher` (background searches),
:mod:`explorer.app.charts` (what the charts show, and the plotly figures) and
:mod:`explorer.app.ui` (Streamlit helpers shared by the pages).
"""
