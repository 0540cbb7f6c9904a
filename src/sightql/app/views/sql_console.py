"""SQL: a console over the warehouse; results as a table, image columns as thumbnails."""

from __future__ import annotations

import streamlit as st

from sightql.app.common import open_session, shown_errors
from sightql.explore.console import MAX_ROWS, run_console_query

RESULT = "sql_console_result"

st.title("SQL")
st.caption(
    "Run any SQL on the warehouse, e.g. `SELECT relative_path, image, classify('imagenet', image).label FROM uploads`. "
    f"The first {MAX_ROWS} rows are shown; image columns (bytes or files) show as thumbnails."
)
query = st.text_area("SQL", key="sql_console_query", height=160, placeholder="SELECT * FROM uploads LIMIT 10")
if st.button("Run", type="primary"):
    st.session_state.pop(RESULT, None)
    with shown_errors(), open_session() as session:
        st.session_state[RESULT] = run_console_query(session.warehouse, query, stages=session.stages)
result = st.session_state.get(RESULT)
if result is not None:
    st.caption(result.summary(MAX_ROWS))
    if not result.statement:
        st.dataframe(
            result.table,
            hide_index=True,
            column_config={name: st.column_config.ImageColumn(name, width="small") for name in result.image_columns},
        )
