"""The SQL page: a typed query's result as a table with thumbnails; any mistake one sentence."""

from __future__ import annotations

import json

import pytest

import sightql
from tests.app_pages import page


@pytest.fixture
def photos_warehouse(warehouse, photos_dir):
    with sightql.connect(warehouse) as s:
        s.load_images("photos", photos_dir)  # a FILE table: thumbnails are read from the internal stage
    return warehouse


def run_query(at, query: str):
    at.text_area[0].input(query)
    at.button[0].click()
    return at.run()


def test_a_query_shows_a_table_with_image_thumbnails(photos_warehouse, monkeypatch):
    at = page("sql_console", photos_warehouse, monkeypatch).run()
    run_query(at, "SELECT relative_path, image, classify('imagenet', image).label AS label FROM photos ORDER BY relative_path")
    assert not at.exception and not at.error
    [frame] = at.dataframe
    shown = frame.value
    assert list(shown.columns) == ["relative_path", "image", "label"] and len(shown) == 8
    assert shown.set_index("relative_path").loc["coffee.jpg", "label"] == "espresso"
    assert all(uri.startswith("data:image/jpeg;base64,") for uri in shown["image"])
    columns = json.loads(frame.proto.columns)  # the column config sent to the browser
    assert columns["image"]["type_config"] == {"type": "image"} and "label" not in columns
    assert "8 row(s)." in [c.value for c in at.caption]
    at.run()  # a rerun shows the same result without running the query again
    assert len(at.dataframe) == 1


def test_long_results_are_cut_and_the_cut_is_said(photos_warehouse, monkeypatch):
    at = run_query(page("sql_console", photos_warehouse, monkeypatch).run(), "SELECT range AS n FROM range(5000)")
    assert len(at.dataframe[0].value) == 200
    assert any(c.value.startswith("Showing the first 200 rows; the query returns more") for c in at.caption)


@pytest.mark.parametrize(
    "query, sentence",
    [
        ("SELEC * FROM photos", "syntax error"),
        ("SELECT * FROM nowhere", "Table with name nowhere does not exist"),
        ("", "the query is empty; type some SQL"),
        ("SELECT classify('no_such_model', image) FROM photos", "no_such_model"),
        ("SELECT classify_topk('imagenet', image, 0) FROM photos", "classify_topk needs k >= 1, got 0; pass e.g. 5"),
        ("SELECT 'x'::INTEGER", "Conversion Error"),
        ("SELECT ?", "parameter"),
        ("'; DROP TABLE photos; --", "unterminated string literal"),
        ("\x00\x01 ☃ SELECT", "error"),
    ],
)
def test_any_mistake_is_one_sentence_not_a_crash(photos_warehouse, monkeypatch, query, sentence):
    at = run_query(page("sql_console", photos_warehouse, monkeypatch).run(), query)
    assert not at.exception
    [error] = at.error
    assert sentence.lower() in error.value.lower() and "Traceback" not in error.value
    assert not at.dataframe
    with sightql.connect(photos_warehouse) as s:
        assert s.sql("SELECT count(*) AS n FROM photos").to_pylist() == [{"n": 8}]
