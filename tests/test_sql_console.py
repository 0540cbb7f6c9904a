"""run_console_query: what the SQL console shows for any query a person types."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from sightql.errors import ConfigError, SightQLError
from sightql.images.thumbnails import thumbnail_data_uri
from sightql.explore.console import run_console_query


@pytest.fixture
def photos(session, photos_dir):
    session.load_images("photos", photos_dir)
    return session


def decoded(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_image_columns_become_thumbnails_and_other_bytes_a_count(photos):
    result = run_console_query(
        photos.warehouse, stages=photos.stages, query=
        "SELECT relative_path, image, 'abc'::BLOB AS raw, classify('imagenet', image) AS top FROM photos "
        "WHERE relative_path IN ('chelsea.jpg', 'coffee.jpg') ORDER BY relative_path",
    )
    assert result.image_columns == ["image"] and not result.truncated and not result.statement
    rows = result.table.to_pylist()
    assert [r["relative_path"] for r in rows] == ["chelsea.jpg", "coffee.jpg"]
    thumbnail = decoded(rows[0]["image"])
    assert max(thumbnail.size) == 96 and thumbnail.size == (96, 64)  # 451x300 scaled to fit 96x96
    assert rows[0]["raw"] == "<3 bytes>"
    assert '"label": "espresso"' in rows[1]["top"]
    assert result.summary() == "2 row(s)."


def test_file_and_blob_columns_show_the_same_thumbnails_and_a_missing_file_shows_its_value(photos, photos_dir):
    photos.load_images("inline_photos", photos_dir, inline=True)
    query = "SELECT relative_path, image FROM {} ORDER BY relative_path"
    files = run_console_query(photos.warehouse, query.format("photos"), stages=photos.stages)
    blobs = run_console_query(photos.warehouse, query.format("inline_photos"))
    assert files.image_columns == blobs.image_columns == ["image"]
    assert files.table.to_pylist() == blobs.table.to_pylist()
    without_stages = run_console_query(photos.warehouse, query.format("photos"))  # no catalog: shown as JSON
    assert without_stages.image_columns == [] and '"stage": "@_internal"' in without_stages.table.to_pylist()[0]["image"]
    photos.sql("CREATE TABLE gone AS SELECT {'stage': '@_internal', 'relative_path': 'no/such.jpg', 'size': 9, "
               "'etag': 'x', 'content_type': 'image/jpeg', 'last_modified': NULL}::file AS image")
    missing = run_console_query(photos.warehouse, "SELECT image FROM gone", stages=photos.stages)
    assert missing.image_columns == [] and "no/such.jpg" in missing.table.to_pylist()[0]["image"]


def test_only_the_first_rows_are_computed_and_the_cut_is_said(photos):
    result = run_console_query(photos.warehouse, "SELECT range AS i FROM range(1000)", max_rows=200)
    assert result.table.num_rows == 200 and result.truncated
    assert result.summary(200).startswith("Showing the first 200 rows; the query returns more")
    exact = run_console_query(photos.warehouse, "SELECT range AS i FROM range(200)", max_rows=200)
    assert exact.table.num_rows == 200 and not exact.truncated


def test_statements_and_awkward_types_and_duplicate_names(photos):
    made = run_console_query(photos.warehouse, "CREATE TABLE t (x INTEGER)")  # DuckDB 2 answers DDL with an empty Count
    assert made.table.num_rows == 0 and made.summary() == "0 row(s)."
    inserted = run_console_query(photos.warehouse, "INSERT INTO t VALUES (1), (2)")
    assert inserted.table.to_pylist() == [{"Count": 2}]
    assert photos.sql("SELECT count(*) AS n FROM t").to_pylist() == [{"n": 2}]  # run once, not again for the limit
    result = run_console_query(
        photos.warehouse,
        "SELECT 1 AS a, 2 AS a, INTERVAL 3 DAY AS span, 12345678901234567890.5::DECIMAL(38,1) AS big, "
        "MAP {'k': 1} AS m, [1, 2] AS l, NULL AS nothing, 'x'::BLOB IS NULL AS flag, DATE '2024-01-02' AS d",
    )
    assert result.table.column_names == ["a", "a_1", "span", "big", "m", "l", "nothing", "flag", "d"]
    row = result.table.to_pylist()[0]
    assert (row["a"], row["a_1"], row["big"], row["l"], row["nothing"], row["flag"]) == (1, 2, "12345678901234567890.5", "[1, 2]", None, False)
    assert "3" in row["span"] and "k" in row["m"]


@pytest.mark.parametrize(
    "query, sentence",
    [
        ("SELEC 1", "syntax error"),
        ("SELECT * FROM nowhere", "nowhere does not exist"),
        ("SELECT classify('nope', image) FROM photos", "nope"),
        ("SELECT ?", "parameter"),
        ("SELECT 1/0::INTEGER; SELECT 'x'::INTEGER", "Conversion Error"),
    ],
)
def test_bad_queries_are_one_error_sentence(photos, query, sentence):
    with pytest.raises(SightQLError) as raised:
        run_console_query(photos.warehouse, query)
    assert sentence.lower() in str(raised.value).lower() and "Traceback" not in str(raised.value)


def test_an_empty_query_names_what_to_type(session):
    with pytest.raises(ConfigError, match="the query is empty; type some SQL"):
        run_console_query(session.warehouse, "  \n ")


def test_thumbnail_of_something_that_is_no_image_is_none():
    assert thumbnail_data_uri(b"\x89PNG not really") is None and thumbnail_data_uri(None) is None
