"""Search: the images of an indexed table nearest an uploaded, picked or described image; and its near-duplicates.

Everything is the library's: ``session.indexes()``, ``create_index``, ``refresh_index``, ``similar_images`` and
``near_duplicates`` (docs/search.md). The page only reads the shown rows' images back from the table, through
predict's own reader of the indexed column (BLOB, FILE values or '@stage/path' values), to draw thumbnails.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import streamlit as st

import sightql
from sightql.app.common import open_session, shown_errors
from sightql.app.widgets import GRID_COLUMNS
from sightql.images.thumbnails import thumbnail
from sightql.search.embedder import TextQuery, text_refusal
from sightql.sql.file_type import is_file_type
from sightql.sql.identifiers import quote_ident

IMAGE_TYPES = ["jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff"]
THUMBNAIL_SIDE = 192
MAX_PICK = 500  # keys offered in the "pick an image" list
MAX_PAIRS = 24  # near-duplicate pairs drawn (all are counted)
UPLOAD, PICK, TEXT = "Upload an image", "Pick one of the table's images", "Describe it in words"
# Columns that can hold images (BLOB or FILE), outside SightQL's own bookkeeping tables: what the create form offers.
_COLUMNS = ("SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE NOT internal AND schema_name = 'main' "
            "AND NOT starts_with(table_name, 'sightql_') AND NOT starts_with(table_name, '_sightql_') "
            "ORDER BY table_name, column_index")


# ---- drawing -----------------------------------------------------------------------------------------------
def image_cell(session: sightql.Session, data: bytes | None, key: Any, text: str) -> None:
    small = thumbnail(data, session.limits, THUMBNAIL_SIDE)
    if small is None:
        st.error(f"{key}: the image cannot be read from the table")
    else:
        st.image(small, width="stretch")
    st.markdown(text)


def result_grid(session: sightql.Session, index: dict[str, Any], found: list[dict[str, Any]]) -> None:
    images = session.index_images(index["table"], [row["key"] for row in found])
    for start in range(0, len(found), GRID_COLUMNS):
        for cell, row in zip(st.columns(GRID_COLUMNS), found[start:start + GRID_COLUMNS]):
            with cell.container(border=True):
                image_cell(session, images.get(row["key"]), row["key"],
                           f"**{row['rank']}.** `{row['key']}` · distance {row['distance']:.4f}")


def pair_rows(session: sightql.Session, index: dict[str, Any], pairs: list[dict[str, Any]]) -> None:
    images = session.index_images(index["table"], [key for pair in pairs for key in (pair["key_a"], pair["key_b"])])
    for pair in pairs:
        with st.container(border=True):
            a, b, distance = st.columns([2, 2, 1], vertical_alignment="center")
            with a:
                image_cell(session, images.get(pair["key_a"]), pair["key_a"], f"`{pair['key_a']}`")
            with b:
                image_cell(session, images.get(pair["key_b"]), pair["key_b"], f"`{pair['key_b']}`")
            distance.markdown(f"distance **{pair['distance']:.4f}**")


# ---- the page's parts --------------------------------------------------------------------------------------
def create_form(session: sightql.Session) -> None:
    """Choose a table, its image column and a model; create_index embeds every row (docs/search.md)."""
    columns = [(row["table_name"], row["column_name"]) for row in session.sql(_COLUMNS).to_pylist()
               if row["data_type"] == "BLOB" or is_file_type(row["data_type"])]
    if not columns:
        st.info("The warehouse has no table of images yet: store some first (the Recognize page, or "
                "`sightql load TABLE FOLDER`), then index them here.")
        return
    models = ["imagenet", *session.registry.refs(task="embedding"), *session.registry.refs(task="zero-shot")]
    with st.form("create_index"):
        table, image = st.selectbox("Images", columns, key="search_new_column", format_func=lambda c: f"{c[0]}.{c[1]}",
                                    help="A table's column of images (BLOB or FILE values); for a column of "
                                         "'@stage/path' values use `sightql index create TABLE --image COLUMN`.")
        model = st.selectbox("Model", models, key="search_new_model",
                             help="imagenet: the bundled network's features; a zero-shot model also answers text.")
        submitted = st.form_submit_button("Create index", type="primary")
    if submitted:
        with st.spinner(f"embedding every image of {table} with {model}"):
            report = session.create_index(table, image=image, model=model)
        st.session_state["search_table"] = report.table
        st.session_state["search_done"] = str(report)
        st.rerun()


def chosen_query(session: sightql.Session, index: dict[str, Any], zero_shot: bool) -> Any:
    """The query the person gave (bytes, or a text), or None while there is none."""
    modes = [UPLOAD, PICK, TEXT] if zero_shot else [UPLOAD, PICK]
    mode = st.radio("Query", modes, horizontal=True, key="search_mode")
    if not zero_shot:
        st.caption(text_refusal(index["model"], index["table"]) + ".")
    if mode == UPLOAD:
        upload = st.file_uploader("Image", type=IMAGE_TYPES, key="search_upload",
                                  max_upload_size=max(1, math.ceil(session.limits.max_bytes / 2**20)))
        return None if upload is None else upload.getvalue()
    if mode == PICK:
        keys = session.sql(f"SELECT {quote_ident(index['key'])} FROM {quote_ident(index['table'])} ORDER BY 1 "
                           f"LIMIT {MAX_PICK}").column(0).to_pylist()
        key = st.selectbox("Image of the table", keys, index=None, key="search_pick", placeholder="a row key",
                           help=f"The first {MAX_PICK} keys of {index['table']}.")
        if key is None:
            return None
        data = session.index_images(index["table"], [key]).get(key)
        if data is None:
            st.error(f"{key}: the image cannot be read from the table")
        return data
    text = st.text_input("Text", key="search_text", placeholder="a dented car door")
    return TextQuery(text) if text.strip() else None


def search_tab(session: sightql.Session, index: dict[str, Any], zero_shot: bool) -> None:
    query = chosen_query(session, index, zero_shot)
    k = st.slider("k: how many nearest images", 1, 48, 8, key="search_k")
    if query is None:
        st.info("Give a query above to see the nearest images of the table.")
        return
    shown = thumbnail(query, session.limits, THUMBNAIL_SIDE) if isinstance(query, bytes) else None
    if shown is not None:
        st.image(shown, caption="query", width=THUMBNAIL_SIDE)
    found = session.similar_images(index["table"], query, k).to_pylist()
    st.subheader(f"{len(found)} nearest image(s) of {index['table']}")
    result_grid(session, index, found)


def duplicates_tab(session: sightql.Session, index: dict[str, Any]) -> None:
    threshold = st.slider("Threshold (cosine distance)", 0.0, 0.5, 0.1, 0.01, key="search_threshold",
                          help="Pairs at most this far apart; copies (re-encoded, resized, cropped) are mostly under 0.1.")
    if not st.button("Find near-duplicates", key="search_find_duplicates"):
        return
    pairs = session.near_duplicates(index["table"], threshold).to_pylist()
    if not pairs:
        st.info(f"No two images of {index['table']} are within {threshold:.2f} of each other.")
        return
    shown = f"; the closest {MAX_PAIRS} are shown" if len(pairs) > MAX_PAIRS else ""
    st.subheader(f"{len(pairs)} pair(s) within {threshold:.2f}{shown}")
    pair_rows(session, index, pairs[:MAX_PAIRS])


# ---- the page ----------------------------------------------------------------------------------------------
st.title("Search")
st.caption(
    "Finds the images of an indexed table nearest a query image (or text), and pairs of near-duplicates, with "
    "the same functions SQL has: `SELECT * FROM similar_images('photos', ?, 8)`, "
    "`SELECT * FROM near_duplicates('photos', 0.1)`. Distances are cosine distances: 0 is the same picture."
)
with shown_errors(), open_session() as session:
    done = st.session_state.pop("search_done", None)
    if done:
        st.success(done)
    indexes = {index["table"]: index for index in session.indexes()}
    if not indexes:
        st.info("No table has a search index yet. An index embeds every image of a table once, so a search compares "
                "vectors, not images; create one here (or with `sightql index create TABLE`).")
        create_form(session)
        st.stop()
    names = list(indexes)
    wanted = st.session_state.get("search_table")
    table = st.sidebar.selectbox("Indexed table", names, index=names.index(wanted) if wanted in names else 0)
    st.session_state["search_table"] = table
    index = indexes[table]
    refreshed = index["refreshed_at"]
    st.caption(f"Index of `{table}`: column `{index['image']}`, model `{index['model_version']}`, "
               f"{index['dimension']} numbers per image, last refreshed "
               f"{'never' if refreshed is None else f'{refreshed:%Y-%m-%d %H:%M:%S}'}. "
               "Rows added since are not found until a refresh.")
    if st.sidebar.button("Refresh index", help="Embed rows added or changed since, drop deleted ones."):
        st.success(str(session.refresh_index(table)))
    with st.sidebar.expander("Index another table"):
        create_form(session)
    zero_shot = index["model"] in session.registry.refs(task="zero-shot")
    similar, duplicates = st.tabs(["Similar images", "Near-duplicates"])
    with similar:
        search_tab(session, index, zero_shot)
    with duplicates:
        duplicates_tab(session, index)
