"""`sightql tables externalize`: a BLOB image table's bytes moved into the internal stage, crash-safe."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import sightql
from sightql.ingest import externalize
from sightql.sql.file_type import is_file_type
from sightql.sql.tables import primary_key, table_columns
from tests.kill_runs import kill_at_random_points, timed_run
from tests.test_internal_stage import check_table_matches_folder, internal_files

CLI = [sys.executable, "-m", "sightql"]
LABELS = "SELECT relative_path, classify('imagenet', image).label AS label FROM pics ORDER BY 1"


def columns_of(session, table: str = "pics") -> dict[str, str]:
    with session.warehouse.cursor() as cursor:
        return table_columns(cursor, table)


def test_externalize_keeps_rows_columns_labels_and_predictions_current(session, photos_dir, warehouse):
    session.load_images("pics", photos_dir, inline=True)
    assert session.predict("imagenet", "pics", progress=False).predicted == 8
    before = session.sql("SELECT * EXCLUDE (image) FROM pics ORDER BY relative_path").to_pylist()
    labels = session.sql(LABELS).to_pylist()
    names_before = set(columns_of(session))

    report = session.externalize_table("pics")

    assert report.moved == 8 and not report.already
    columns = columns_of(session)
    assert set(columns) == names_before and is_file_type(columns["image"])
    with session.warehouse.cursor() as cursor:
        assert primary_key(cursor, "pics") == ["relative_path"]
    assert session.sql("SELECT * EXCLUDE (image) FROM pics ORDER BY relative_path").to_pylist() == before
    assert session.sql(LABELS).to_pylist() == labels
    again = session.predict("imagenet", "pics", progress=False)
    assert (again.predicted, again.skipped) == (0, 8)  # the FILE identity is the row's sha256
    assert len(internal_files(warehouse)) == 8
    assert session.externalize_table("pics").already


def test_a_row_loaded_into_the_blob_table_meanwhile_is_moved_by_the_rerun(session, photos_dir, tmp_path, monkeypatch):
    session.load_images("pics", photos_dir, inline=True)
    monkeypatch.setattr(externalize, "_swap", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # stopped after the chunks, before the swap
        session.externalize_table("pics")
    monkeypatch.undo()
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(photos_dir / "coffee.jpg", extra / "late.jpg")
    session.load_images("pics", extra)  # still a BLOB table: loaded inline
    assert session.externalize_table("pics").moved == 1
    rows = session.sql("SELECT count(*) AS n, count(image) AS files FROM pics").to_pylist()
    assert rows == [{"n": 9, "files": 9}] and is_file_type(columns_of(session)["image"])


def test_cli_externalize_and_its_mistakes(warehouse, photos_dir):
    w = ["-w", str(warehouse)]
    assert subprocess.run([*CLI, "load", "pics", str(photos_dir), "--inline", *w], capture_output=True).returncode == 0
    first = subprocess.run([*CLI, "tables", "externalize", "pics", *w], capture_output=True, text=True)
    assert first.returncode == 0 and "8 row(s) moved" in first.stdout, first.stderr
    second = subprocess.run([*CLI, "tables", "externalize", "pics", *w], capture_output=True, text=True)
    assert second.returncode == 0 and "already keeps its images" in second.stdout
    missing = subprocess.run([*CLI, "tables", "externalize", "nope", *w], capture_output=True, text=True)
    assert missing.returncode == 2 and "no table named 'nope'" in missing.stderr and "Traceback" not in missing.stderr


def test_kill_9_of_externalize_at_random_points_then_a_rerun_loses_and_duplicates_nothing(
    tmp_path, phone_photos_dir, photos_dir, model_cache
):
    folder = tmp_path / "mixed"
    shutil.copytree(phone_photos_dir, folder / "phone")
    shutil.copytree(photos_dir, folder / "samples")
    homes = [tmp_path / "scratch", tmp_path / "wh"]
    for home in homes:
        timed_run(["load", "pics", str(folder), "--inline", "-w", str(home)])
    span = timed_run(["tables", "externalize", "pics", "-w", str(homes[0])])
    args = ["tables", "externalize", "pics", "-w", str(homes[1])]
    kill_at_random_points(args, span, times=3, seed=21)
    timed_run(args)
    with sightql.connect(homes[1]) as s:
        assert is_file_type(columns_of(s)["image"])
        check_table_matches_folder(s, "pics", folder, homes[1])
