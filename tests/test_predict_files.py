"""Batch predict over a table of FILE values: same answers as BLOBs, the change rule, both runners."""

from __future__ import annotations

from pathlib import Path

import pytest

from sightql.errors import TableError
from sightql.inference.runners import DaskRunner
from sightql.sql.file_type import FILE_SQL, is_file_type
from sightql.sql.tables import table_columns
from sightql.stages.files import to_file
from tests.test_batch_predict import PHOTO_FILES, stored

ANSWER = ("predicted_label", "confidence", "top_k", "prediction_error")


def file_table(session, photos_dir: Path, table: str = "t") -> None:
    """The photos in stage '@s' and a table of FILE values naming them, keyed by relative path."""
    if "s" not in session.stages.names():
        session.create_stage("s").put(photos_dir)
    session.sql(f"CREATE TABLE {table} (relative_path VARCHAR PRIMARY KEY, image file)")
    for path in sorted(p.name for p in photos_dir.iterdir()):
        session.sql(f"INSERT INTO {table} VALUES (?, ?)", [path, to_file(session.stages, "@s", path).as_row()])


def answers(session, table: str) -> dict:
    return {key: tuple(row[c] for c in ANSWER) for key, row in stored(session, table).items()}


def test_duckdb_reports_a_file_column_as_its_struct_and_is_file_type_knows_it(session):
    session.sql(f"CREATE TABLE kinds (a file, b {FILE_SQL}, c BLOB, d STRUCT(stage VARCHAR))")
    with session.warehouse.cursor() as cursor:
        kinds = table_columns(cursor, "kinds")
    assert [is_file_type(t) for t in kinds.values()] == [True, True, False, False]
    assert is_file_type("file") and is_file_type("FILE")


def test_a_file_table_predicts_as_the_same_images_in_a_blob_table(session, photos_dir):
    session.sql("CREATE TABLE blobs (relative_path VARCHAR PRIMARY KEY, image BLOB)")
    for path in sorted(photos_dir.iterdir()):  # notes.txt too: the same error row either way
        session.sql("INSERT INTO blobs VALUES (?, ?)", [path.name, path.read_bytes()])
    file_table(session, photos_dir)
    blob = session.predict("imagenet", "blobs", top_k=3, progress=False)
    same = session.predict("imagenet", "t", top_k=3, batch_size=4, chunk_rows=3, progress=False)
    into = session.predict("imagenet", "t", into="labels", top_k=3, progress=False)
    assert (same.predicted, same.errors, same.skipped) == (blob.predicted, blob.errors, 0) == (PHOTO_FILES + 1, 1, 0)
    assert into.predicted == PHOTO_FILES + 1
    expected = answers(session, "blobs")
    assert answers(session, "t") == expected == answers(session, "labels")
    assert expected["notes.txt"][3].startswith("not an image")
    rows = stored(session, "t")
    ref = to_file(session.stages, "@s", "coffee.jpg")
    # The FILE's identity stands where a BLOB row's sha256 would: what the prediction was made from.
    assert rows["coffee.jpg"]["predicted_sha256"] == f"file:{ref.size}:{ref.etag}"


def test_rerun_skips_a_changed_file_is_an_error_row_and_a_re_recorded_value_is_predicted_again(session, photos_dir):
    file_table(session, photos_dir)
    session.predict("imagenet", "t", progress=False)
    before = stored(session, "t")
    again = session.predict("imagenet", "t", progress=False)
    assert (again.predicted, again.skipped) == (0, PHOTO_FILES + 1)

    stage = session.stages.get("s")
    stage.write_bytes("coffee.jpg", (photos_dir / "chelsea.jpg").read_bytes())  # new bytes, the value not re-recorded
    changed = session.predict("imagenet", "t", progress=False)
    assert (changed.predicted, changed.errors, changed.skipped) == (1, 1, PHOTO_FILES)
    row = stored(session, "t")["coffee.jpg"]
    assert row["predicted_label"] is None and row["predicted_sha256"] is None
    assert "@s/coffee.jpg changed since this FILE value was made" in row["prediction_error"]
    for key in set(before) - {"coffee.jpg"}:
        assert stored(session, "t")[key]["predicted_at"] == before[key]["predicted_at"]
    # Not silently re-predicted from the other bytes on the next run either: still the error.
    assert session.predict("imagenet", "t", progress=False).errors == 1

    session.sql("UPDATE t SET image = ? WHERE relative_path = 'coffee.jpg'",
                [to_file(session.stages, "@s", "coffee.jpg").as_row()])
    recorded = session.predict("imagenet", "t", progress=False)
    assert (recorded.predicted, recorded.errors, recorded.skipped) == (1, 0, PHOTO_FILES)
    after = stored(session, "t")
    assert after["coffee.jpg"]["predicted_label"] == before["chelsea.jpg"]["predicted_label"]
    assert after["coffee.jpg"]["confidence"] == pytest.approx(before["chelsea.jpg"]["confidence"], abs=1e-6)
    assert session.predict("imagenet", "t", progress=False).predicted == 0
    assert session.predict("imagenet", "t", recompute=True, progress=False).predicted == PHOTO_FILES + 1


def test_missing_files_unknown_stages_and_null_values_are_that_rows_error_and_the_rest_go_on(session, photos_dir):
    file_table(session, photos_dir)
    session.stages.get("s").remove("rocket.jpg")
    stray = {**to_file(session.stages, "@s", "china.jpg").as_row(), "stage": "@nowhere"}
    session.sql("INSERT INTO t VALUES ('stray', ?), ('empty', NULL)", [stray])
    report = session.predict("imagenet", "t", into="labels", progress=False)
    assert (report.predicted, report.errors) == (PHOTO_FILES + 3, 4)  # notes.txt, rocket, stray, empty
    rows = stored(session, "labels")
    assert "@s/rocket.jpg does not exist" in rows["rocket.jpg"]["prediction_error"]
    assert "no stage named 'nowhere'" in rows["stray"]["prediction_error"]
    assert rows["empty"]["prediction_error"] is not None
    assert rows["coffee.jpg"]["predicted_label"] == "espresso"
    # A row that could not be read is tried again next time; the NULL value and the bad image are current.
    again = session.predict("imagenet", "t", into="labels", progress=False)
    assert (again.predicted, again.errors, again.skipped) == (2, 2, PHOTO_FILES + 1)


def test_only_blob_or_file_columns_are_images(session):
    session.sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, image VARCHAR)")
    with pytest.raises(TableError, match="is VARCHAR, not BLOB or file"):
        session.predict("imagenet", "notes", progress=False)


@pytest.mark.dask
@pytest.mark.slow
def test_dask_workers_read_the_files_themselves_and_agree_with_the_local_runner(session, photos_dir, monkeypatch):
    file_table(session, photos_dir)
    local = session.predict("imagenet", "t", into="by_local", top_k=2, progress=False)

    def no_bytes_here(*args, **kwargs):
        raise AssertionError("the driver read an image's bytes")

    # The workers are other processes: this only forbids the driver to read a file.
    monkeypatch.setattr("sightql.stages.stage.Stage.read_bytes", no_bytes_here)
    monkeypatch.setattr("sightql.stages.stage.Stage.read_checked", no_bytes_here)
    runner = DaskRunner(workers=2)
    distributed = session.predict("imagenet", "t", into="by_dask", top_k=2, runner=runner, chunk_rows=3, progress=False)
    assert (distributed.predicted, distributed.errors, distributed.runner) == (local.predicted, local.errors, "dask")
    a, b = stored(session, "by_local"), stored(session, "by_dask")
    assert set(a) == set(b)
    for key in a:
        assert (a[key]["predicted_label"], a[key]["prediction_error"], a[key]["predicted_sha256"]) == \
            (b[key]["predicted_label"], b[key]["prediction_error"], b[key]["predicted_sha256"])
        if a[key]["confidence"] is not None:
            assert a[key]["confidence"] == pytest.approx(b[key]["confidence"], abs=1e-6)
            assert [t["label"] for t in a[key]["top_k"]] == [t["label"] for t in b[key]["top_k"]]
    monkeypatch.undo()

    session.stages.get("s").write_bytes("coffee.jpg", (photos_dir / "chelsea.jpg").read_bytes())
    rerun = session.predict("imagenet", "t", into="by_dask", top_k=2, runner=runner, chunk_rows=3, progress=False)
    assert (rerun.predicted, rerun.errors, rerun.skipped) == (1, 1, PHOTO_FILES)
    assert "changed since this FILE value was made" in stored(session, "by_dask")["coffee.jpg"]["prediction_error"]
