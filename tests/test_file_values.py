"""FILE values in SQL: to_file(), directory().file, and the image functions over FILE as over BLOB.

Real stages, the real sample photos and the real bundled model; a FILE's bytes are read inside
the function, a batch at a time, and a changed, removed or linked-out file costs only its row.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import sightql
from sightql.config import Settings
from sightql.errors import SightQLError
from sightql.stages.stage import Stage

IMAGES = "relative_path LIKE '%.jpg' OR relative_path LIKE '%.png'"


@pytest.fixture
def staged(session, photos_dir):
    """The sample photos twice: in the stage @photos, and as BLOBs in the table ``blobs``; plus ``files``,
    a table of FILE values made from directory('@photos')."""
    session.create_stage("photos").put(photos_dir)
    session.load_images("blobs", photos_dir, inline=True)
    session.sql(f"CREATE TABLE files AS SELECT relative_path, file AS image FROM directory('@photos') WHERE {IMAGES}")
    return session


def test_to_file_fields_are_readable_and_match_the_listing(staged, photos_dir):
    row = staged.sql(
        "SELECT to_file('@photos', 'coffee.jpg') AS f, to_file('@photos', 'coffee.jpg').size AS size, "
        "to_file('@photos', 'coffee.jpg').relative_path AS path"
    ).to_pylist()[0]
    listed = staged.sql("SELECT * FROM directory('@photos') WHERE relative_path = 'coffee.jpg'").to_pylist()[0]
    assert row["size"] == (photos_dir / "coffee.jpg").stat().st_size == listed["size"]
    assert row["path"] == "coffee.jpg"
    assert row["f"]["stage"] == "@photos" and row["f"]["content_type"] == "image/jpeg"
    assert row["f"]["etag"] == listed["etag"] and row["f"] == listed["file"]
    # '@stage/prefix' + path, and a missing file gives NULL
    staged.create_stage("nested").put(photos_dir, prefix="in")
    inner = staged.sql("SELECT to_file('@nested/in', 'coffee.jpg').relative_path AS p").to_pylist()
    assert inner == [{"p": "in/coffee.jpg"}]
    assert staged.sql("SELECT to_file('@photos', 'gone.jpg') AS f").to_pylist() == [{"f": None}]


def test_to_file_of_a_missing_file_fails_a_strict_session(warehouse, photos_dir):
    with sightql.connect(warehouse) as s:
        s.create_stage("photos").put(photos_dir)
    with sightql.connect(warehouse, on_error="raise") as strict:
        with pytest.raises(SightQLError, match="gone.jpg does not exist"):
            strict.sql("SELECT to_file('@photos', 'gone.jpg') AS f")


def test_directory_file_column_is_a_file_value(staged):
    rows = staged.sql("SELECT relative_path, size, file FROM directory('@photos') ORDER BY 1").to_pylist()
    assert rows and all(r["file"]["relative_path"] == r["relative_path"] and r["file"]["size"] == r["size"] for r in rows)
    assert {r["file"]["stage"] for r in rows} == {"@photos"}
    types = {r["relative_path"]: r["file"]["content_type"] for r in rows}
    assert types["coffee.jpg"] == "image/jpeg" and types["camera.png"] == "image/png"


def _both(session, select: str) -> tuple[list, list]:
    """``select`` (with {image}) over the BLOB table and over the FILE table, by path."""
    blob = session.sql(f"SELECT relative_path, {select.format(image='image')} AS v FROM blobs ORDER BY 1").to_pylist()
    file = session.sql(f"SELECT relative_path, {select.format(image='image')} AS v FROM files ORDER BY 1").to_pylist()
    return blob, file


@pytest.mark.parametrize(
    "select",
    ["classify('imagenet', {image})", "classify_topk('imagenet', {image}, 3)", "embed('imagenet', {image})",
     "image_info({image})"],
)
def test_functions_over_file_give_the_blob_answers(staged, select):
    blob, file = _both(staged, select)
    assert [r["relative_path"] for r in file] == [r["relative_path"] for r in blob] and len(file) >= 7
    for b, f in zip(blob, file):
        if isinstance(b["v"], list) and b["v"] and isinstance(b["v"][0], float):
            assert f["v"] == pytest.approx(b["v"], abs=1e-5)
        else:
            assert f["v"] == b["v"]


def test_a_named_function_and_to_file_and_blob_in_one_query(staged):
    staged.create_function("whatis", "imagenet")
    rows = staged.sql(
        "SELECT f.relative_path, whatis(f.image) AS by_file, whatis(b.image) AS by_blob, "
        "classify('imagenet', to_file('@photos', f.relative_path)) AS direct "
        "FROM files f JOIN blobs b USING (relative_path) ORDER BY 1"
    ).to_pylist()
    assert rows and all(r["by_file"] == r["by_blob"] == r["direct"] for r in rows)
    staged.drop_function("whatis")
    with pytest.raises(SightQLError):
        staged.sql("SELECT whatis(image) FROM files")


def test_wrong_arguments_name_the_overloads(staged):
    with pytest.raises(SightQLError, match=r"classify\(model VARCHAR, image BLOB\)"):
        staged.sql("SELECT classify('imagenet', 42)")
    null = staged.sql("SELECT classify('imagenet', NULL) AS c, classify('imagenet', NULL::BLOB) AS b").to_pylist()[0]
    assert null["c"] == null["b"] and null["c"]["error"]


def test_the_overloads_cost_nothing_per_row(staged):
    plan = "\n".join(r["explain_value"] for r in staged.sql("EXPLAIN SELECT classify('imagenet', image) FROM files").to_pylist())
    assert "_sightql_classify_file" in plan and "CASE" not in plan and "_blob" not in plan


def test_a_changed_removed_or_linked_out_file_costs_only_its_row(staged, photos_dir, tmp_path):
    root = Path(staged.stages.get("photos").root)
    (root / "coffee.jpg").write_bytes((photos_dir / "chelsea.jpg").read_bytes())  # other bytes, other size
    (root / "camera.png").unlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes((photos_dir / "astronaut.jpg").read_bytes())
    (root / "rocket.jpg").unlink()
    os.symlink(outside / "secret.jpg", root / "rocket.jpg")
    rows = {
        r["relative_path"]: r
        for r in staged.sql("SELECT relative_path, classify('imagenet', image) AS c, image_info(image) AS i FROM files").to_pylist()
    }
    assert "changed since this FILE value was made" in rows["coffee.jpg"]["c"]["error"]
    assert rows["coffee.jpg"]["c"]["label"] is None
    assert "does not exist" in rows["camera.png"]["c"]["error"] and "does not exist" in rows["camera.png"]["i"]["error"]
    assert rows["rocket.jpg"]["c"]["label"] is None and "leads outside the stage" in rows["rocket.jpg"]["c"]["error"]
    assert "leads outside the stage" in rows["rocket.jpg"]["i"]["error"]
    good = [r for path, r in rows.items() if path not in {"coffee.jpg", "camera.png", "rocket.jpg"}]
    assert good and all(r["c"]["error"] is None and r["c"]["label"] for r in good)


def test_a_changed_file_fails_a_strict_session(warehouse, photos_dir):
    with sightql.connect(warehouse) as s:
        s.create_stage("photos").put(photos_dir)
        s.sql("CREATE TABLE files AS SELECT relative_path, file AS image FROM directory('@photos') WHERE relative_path = 'coffee.jpg'")
        Path(s.stages.get("photos").root, "coffee.jpg").write_bytes(b"short")
    with sightql.connect(warehouse, on_error="raise") as strict:
        with pytest.raises(SightQLError, match="changed since this FILE value was made"):
            strict.sql("SELECT classify('imagenet', image) FROM files")


def test_a_file_table_survives_reconnect_and_reads_in_a_read_only_session(warehouse, photos_dir):
    with sightql.connect(warehouse) as s:
        s.create_stage("photos").put(photos_dir)
        s.sql("CREATE TABLE typed (relative_path VARCHAR, image file)")
        s.sql("INSERT INTO typed SELECT relative_path, to_file('@photos', relative_path) FROM directory('@photos') "
              f"WHERE {IMAGES}")
        before = s.sql("SELECT relative_path, classify('imagenet', image) AS c FROM typed ORDER BY 1").to_pylist()
    with sightql.connect(warehouse, read_only=True) as ro:
        after = ro.sql("SELECT relative_path, classify('imagenet', image) AS c FROM typed ORDER BY 1").to_pylist()
        sizes = ro.sql("SELECT image.size AS size FROM typed WHERE relative_path = 'coffee.jpg'").to_pylist()
    assert after == before and before and all(r["c"]["error"] is None for r in before)
    assert sizes == [{"size": (photos_dir / "coffee.jpg").stat().st_size}]


class _Held(bytes):
    """Bytes that count themselves while alive (one file's read, not yet let go)."""

    lock = threading.Lock()
    alive = 0
    peak = 0
    reads = 0

    def __new__(cls, data: bytes):
        with cls.lock:
            cls.alive += 1
            cls.reads += 1
            cls.peak = max(cls.peak, cls.alive)
        return super().__new__(cls, data)

    def __del__(self):
        with _Held.lock:
            _Held.alive -= 1


@pytest.mark.parametrize("select", ["classify('imagenet', image)", "image_info(image)"])
def test_a_call_over_many_file_rows_holds_about_a_batch_of_images(warehouse, photos_dir, monkeypatch, select):
    batch = 8
    with sightql.connect(warehouse) as s:
        s.create_stage("photos").put(photos_dir / "coffee.jpg")
        s.sql("CREATE TABLE many AS SELECT i, to_file('@photos', 'coffee.jpg') AS image FROM range(320) r(i)")
    original = Stage.read_checked  # how a FILE value's bytes are read
    monkeypatch.setattr(Stage, "read_checked", lambda self, path, check: _Held(original(self, path, check)))
    _Held.alive = _Held.peak = _Held.reads = 0
    with sightql.connect(warehouse, settings=Settings(batch_size=batch, decode_threads=4)) as s:
        rows = s.sql(f"SELECT {select} AS v FROM many").to_pylist()
    assert len(rows) == 320 and all(r["v"]["error"] is None for r in rows)
    assert _Held.reads == 320
    assert 1 <= _Held.peak <= 2 * batch  # read-ahead (one batch) + the batch, never DuckDB's 2,048-row chunk
