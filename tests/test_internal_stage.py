"""Tables of references by default: load copies files into the warehouse's internal stage by content."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sightql
from sightql.errors import ConfigError, StageError
from sightql.sql.file_type import is_file_type
from sightql.sql.tables import table_columns
from sightql.stages.paths import content_hash
from tests.kill_runs import kill_at_random_points, timed_run

CLI = [sys.executable, "-m", "sightql"]


def internal_files(warehouse: Path) -> dict[str, Path]:
    """Final files of the local internal stage, by their relative path (partial files left out)."""
    root = warehouse / "stages" / "_internal"
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file() and ".partial-" not in p.name}


def image_type(session, table: str) -> str:
    with session.warehouse.cursor() as cursor:
        return table_columns(cursor, table)["image"]


def check_table_matches_folder(session, table: str, folder: Path, warehouse: Path) -> None:
    """Every image file of ``folder`` is one row, with its own sha256, whose FILE names a whole copy of it."""
    rows = session.sql(f"SELECT relative_path, sha256, image FROM {table}").to_pylist()
    expected = {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".png")}
    assert len(rows) == len(expected)
    assert {r["relative_path"]: r["sha256"] for r in rows} == expected
    stored = internal_files(warehouse)
    for row in rows:
        assert row["image"]["etag"] == row["sha256"] == content_hash(row["image"]["relative_path"])
        assert hashlib.sha256(stored[row["image"]["relative_path"]].read_bytes()).hexdigest() == row["sha256"]


@pytest.fixture()
def twice(photos_dir, tmp_path) -> Path:
    """The sample photos, plus a copy of one under another name (identical bytes)."""
    folder = tmp_path / "twice"
    shutil.copytree(photos_dir, folder)
    shutil.copy(folder / "coffee.jpg", folder / "coffee-again.jpg")
    return folder


def test_load_keeps_file_values_and_identical_bytes_once(session, twice, warehouse):
    report = session.load_images("pics", twice)
    assert len(report.loaded) == 9 and report.skipped[0][0] == "notes.txt"
    assert "not an image" in report.skipped[0][1]
    assert is_file_type(image_type(session, "pics"))
    (distinct,) = session.sql("SELECT count(DISTINCT image.relative_path) AS n FROM pics").to_pylist()
    assert distinct["n"] == 8 and len(internal_files(warehouse)) == 8  # coffee and coffee-again share one file
    check_table_matches_folder(session, "pics", twice, warehouse)
    assert session.sql("SELECT count(*) AS n FROM directory('@_internal')").to_pylist() == [{"n": 8}]


def test_classify_on_a_file_table_equals_classify_on_an_inline_copy(session, photos_dir):
    session.load_images("refs", photos_dir)
    session.load_images("bytes", photos_dir, inline=True)
    assert image_type(session, "bytes") == "BLOB"
    query = "SELECT relative_path, classify('imagenet', image).label AS label, image_info(image).width AS w FROM {} ORDER BY 1"
    by_ref, inline = (session.sql(query.format(t)).to_pylist() for t in ("refs", "bytes"))
    assert by_ref == inline and {r["label"] for r in by_ref} >= {"espresso", "tiger cat"}


def test_an_internal_file_overwritten_in_place_with_the_same_size_is_that_rows_error(session, photos_dir, warehouse):
    session.load_images("refs", photos_dir)
    (row,) = session.sql("SELECT image.relative_path AS p, size FROM refs WHERE relative_path = 'coffee.jpg'").to_pylist()
    copy = warehouse / "stages" / "_internal" / row["p"]
    data = bytearray(copy.read_bytes())
    data[-3] ^= 0xFF  # one byte flipped: same size, other bytes
    copy.write_bytes(bytes(data))
    result = session.sql("SELECT relative_path, classify('imagenet', image) AS c FROM refs ORDER BY 1").to_pylist()
    errors = {r["relative_path"]: r["c"]["error"] for r in result}
    assert "changed since this FILE value" in errors.pop("coffee.jpg")
    assert set(errors.values()) == {None}  # the other rows go on


def test_reload_replaces_the_row_and_an_old_blob_table_stays_inline(session, photos_dir, tmp_path, warehouse):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(photos_dir / "coffee.jpg", folder / "x.jpg")
    session.load_images("pics", folder)
    shutil.copy(photos_dir / "chelsea.jpg", folder / "x.jpg")
    session.load_images("pics", folder)
    rows = session.sql("SELECT relative_path, sha256, classify('imagenet', image).label AS label FROM pics").to_pylist()
    assert rows == [{"relative_path": "x.jpg", "sha256": hashlib.sha256((photos_dir / "chelsea.jpg").read_bytes()).hexdigest(),
                     "label": "tiger cat"}]
    session.load_images("old", folder, inline=True)
    session.load_images("old", photos_dir)  # an existing BLOB table: loaded inline, as before
    assert image_type(session, "old") == "BLOB"
    assert session.sql("SELECT count(*) AS n FROM old").to_pylist() == [{"n": 9}]  # x.jpg and the 8 photos


def test_the_internal_stage_is_reserved_and_read_only(session, photos_dir):
    session.load_images("pics", photos_dir / "coffee.jpg")
    with pytest.raises(ConfigError, match="reserved"):
        session.create_stage("_internal")
    with pytest.raises(ConfigError, match="reserved"):
        session.stages.drop("_internal")
    internal = session.stage("@_internal")
    with pytest.raises(StageError, match="own image store"):
        internal.put(photos_dir / "chelsea.jpg")
    with pytest.raises(StageError, match="own image store"):
        internal.remove("", missing_ok=True)
    assert len(internal.list()) == 1


def test_a_second_process_finds_the_internal_stage(warehouse, photos_dir):
    with sightql.connect(warehouse) as s:
        s.load_images("pics", photos_dir / "coffee.jpg")
    done = subprocess.run([*CLI, "sql", "SELECT classify('imagenet', image).label FROM pics", "-f", "csv",
                           "-w", str(warehouse)], capture_output=True, text=True)
    assert done.returncode == 0 and "espresso" in done.stdout, done.stderr


def test_an_existing_stage_file_is_not_rewritten_and_dead_partials_go(session, photos_dir, warehouse):
    session.load_images("pics", photos_dir / "coffee.jpg")
    (path, final), = internal_files(warehouse).items()
    stamp = final.stat().st_mtime_ns
    dead = final.with_name(final.name + ".partial-999999999-0123abcd")  # left by a writer killed part way
    dead.write_bytes(b"half")
    session.load_images("pics2", photos_dir / "coffee.jpg")
    assert final.stat().st_mtime_ns == stamp and not dead.exists()


def test_cli_load_inline_and_default(warehouse, photos_dir):
    w = ["-w", str(warehouse)]
    assert subprocess.run([*CLI, "load", "a", str(photos_dir), "--inline", *w], capture_output=True).returncode == 0
    assert subprocess.run([*CLI, "load", "b", str(photos_dir), *w], capture_output=True).returncode == 0
    with sightql.connect(warehouse) as s:
        assert image_type(s, "a") == "BLOB" and is_file_type(image_type(s, "b"))


def test_kill_9_of_load_at_random_points_then_a_rerun_loses_and_duplicates_nothing(tmp_path, phone_photos_dir, photos_dir, model_cache):
    folder = tmp_path / "mixed"
    shutil.copytree(phone_photos_dir, folder / "phone")
    shutil.copytree(photos_dir, folder / "samples")
    span = timed_run(["load", "pics", str(folder), "-w", str(tmp_path / "scratch")])
    warehouse = tmp_path / "wh"
    args = ["load", "pics", str(folder), "-w", str(warehouse)]
    kill_at_random_points(args, span, times=3, seed=12)
    timed_run(args)
    with sightql.connect(warehouse) as s:
        check_table_matches_folder(s, "pics", folder, warehouse)
