"""Hostile names are data, never SQL; identifiers are checked."""

from __future__ import annotations

import shutil

import pytest

from sightql.errors import ConfigError

HOSTILE = "x'; DROP TABLE images; --.jpg"


def test_a_hostile_file_name_is_stored_and_queried_as_plain_data(session, photos_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos_dir / "coffee.jpg", folder / HOSTILE)
    report = session.load_images("images", folder)
    assert report.loaded == [HOSTILE]
    rows = session.sql(
        "SELECT relative_path, classify('imagenet', image).label AS label FROM images WHERE relative_path = ?",
        [HOSTILE],
    ).to_pylist()
    assert rows == [{"relative_path": HOSTILE, "label": "espresso"}]
    assert session.sql("SELECT count(*) AS n FROM images").to_pylist() == [{"n": 1}]
    stage = session.create_stage("hostile")
    stage.put(folder)
    listed = session.sql("SELECT relative_path FROM directory('@hostile')").to_pylist()
    assert listed == [{"relative_path": HOSTILE}]


@pytest.mark.parametrize("table", ["images; DROP TABLE x", 'a"b', "1abc", "a.b.c", ""])
def test_table_names_that_are_not_plain_identifiers_are_refused(session, photos_dir, table):
    with pytest.raises(ConfigError, match="not allowed"):
        session.load_images(table, photos_dir)


def test_the_cli_reads_query_values_as_bound_parameters(warehouse, photos_dir, tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos_dir / "chelsea.jpg", folder / HOSTILE)
    cli = [sys.executable, "-m", "sightql"]
    subprocess.run([*cli, "load", "images", str(folder), "-w", str(warehouse)], check=True, capture_output=True)
    out = subprocess.run(
        [*cli, "sql", "SELECT relative_path FROM images WHERE relative_path = ?", "-p", HOSTILE, "-f", "json",
         "-w", str(warehouse)],
        check=True, capture_output=True, text=True,
    ).stdout
    assert HOSTILE in out


def test_a_table_name_in_another_case_names_the_same_table_as_duckdb_resolves_it(session, photos_dir):
    session.store_images("images", [("coffee.jpg", (photos_dir / "coffee.jpg").read_bytes())])
    report = session.store_images("Images", [("chelsea.jpg", (photos_dir / "chelsea.jpg").read_bytes())])
    assert [image.relative_path for image in report.added] == ["chelsea.jpg"]
    assert session.sql("SELECT count(*) AS n FROM IMAGES").to_pylist() == [{"n": 2}]
