"""Entry script for ``sightql app``: the page list. Run with ``streamlit run`` (the CLI does)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

# Not "pages/": Streamlit would also list that folder's scripts on its own, under their file
# names, and run them without this navigation when a page's URL is opened directly.
PAGES = Path(__file__).parent / "views"

st.set_page_config(page_title="SightQL", page_icon=":material/image_search:", layout="wide")
navigation = st.navigation(
    [
        st.Page(PAGES / "recognize.py", title="Recognize", icon=":material/image_search:", default=True),
        st.Page(PAGES / "generate.py", title="Generate", icon=":material/brush:"),
        st.Page(PAGES / "search.py", title="Search", icon=":material/photo_library:"),
        st.Page(PAGES / "stage_explorer.py", title="Stage explorer", icon=":material/folder_open:"),
        st.Page(PAGES / "models.py", title="Models", icon=":material/model_training:"),
        st.Page(PAGES / "training.py", title="Training", icon=":material/monitoring:"),
        st.Page(PAGES / "sql_console.py", title="SQL", icon=":material/terminal:"),
    ]
)
navigation.run()
