"""FILE values at the stage level: what ``to_file`` records, and that reading one checks the file first.

A FILE names a file and records its size and etag; reading it when the file changed, vanished or
leads out of the stage is a sentence for that file, never other bytes.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from sightql.errors import StageError, StageFileChangedError, StagePathError
from sightql.stages.files import FileRef, content_type, file_refs, read_file, read_ref, to_file


@pytest.fixture
def staged(session, photos_dir):
    stage = session.create_stage("pics")
    stage.put(photos_dir / "coffee.jpg", "food")
    return stage


def test_to_file_records_the_file_as_the_stage_lists_it(session, staged, photos_dir):
    ref = to_file(session.stages, "@pics", "food/coffee.jpg")
    listed = {f.relative_path: f for f in staged.list()}["food/coffee.jpg"]
    assert (ref.stage, ref.relative_path, ref.size, ref.etag) == ("@pics", "food/coffee.jpg", listed.size, listed.etag)
    assert ref.size == (photos_dir / "coffee.jpg").stat().st_size and ref.content_type == "image/jpeg"
    assert ref.last_modified is not None and ref.last_modified.tzinfo is not None
    assert to_file(session.stages, "@pics/food", "coffee.jpg") == ref  # a prefix in the reference
    assert FileRef.from_row(ref.as_row()) == ref


def test_reading_a_file_value_gives_its_bytes(session, staged, photos_dir):
    ref = to_file(session.stages, "@pics", "food/coffee.jpg")
    assert read_file(staged, ref) == (photos_dir / "coffee.jpg").read_bytes()


def test_a_changed_file_is_an_error_not_other_bytes(session, staged, photos_dir):
    ref = to_file(session.stages, "@pics", "food/coffee.jpg")
    time.sleep(0.01)
    staged.write_bytes("food/coffee.jpg", (photos_dir / "chelsea.jpg").read_bytes())
    with pytest.raises(StageFileChangedError, match="changed since this FILE value was made"):
        read_file(staged, ref)


def test_same_size_other_bytes_are_caught_by_the_etag(session, staged):
    ref = to_file(session.stages, "@pics", "food/coffee.jpg")
    path = os.path.join(staged.root, "food/coffee.jpg")
    data = bytearray(open(path, "rb").read())
    data[-3] ^= 0xFF
    time.sleep(0.01)
    with open(path, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(StageFileChangedError):
        read_file(staged, ref)


def test_missing_and_escaping_files_are_row_errors(session, staged, photos_dir, tmp_path):
    ref = to_file(session.stages, "@pics", "food/coffee.jpg")
    outside = tmp_path / "outside.jpg"
    shutil.copy(photos_dir / "chelsea.jpg", outside)
    os.symlink(outside, os.path.join(staged.root, "food/link.jpg"))
    escaping = FileRef("@pics", "food/link.jpg", outside.stat().st_size, "x", "image/jpeg", None)
    staged.remove("food/coffee.jpg")
    def outcome(value):
        try:
            return read_ref(session.stages, value)
        except StageError as exc:
            return exc

    missing, leaked, none = [outcome(value) for value in (ref, escaping, None)]
    assert isinstance(missing, StageError) and "does not exist" in str(missing)
    assert isinstance(leaked, StagePathError)
    assert none is None
    with pytest.raises(StageError, match="does not exist"):
        to_file(session.stages, "@pics", "food/coffee.jpg")
    with pytest.raises(StageError, match="is a folder"):
        to_file(session.stages, "@pics", "food")


@pytest.mark.parametrize("name, expected", [
    ("a.JPG", "image/jpeg"), ("b.png", "image/png"), ("c.heic", "image/heic"), ("d.dcm", "application/dicom"),
    ("e.unknownext", None),
])
def test_content_type_comes_from_the_name(name, expected):
    assert content_type(name) == expected


def test_a_file_column_keeps_its_type_across_sessions(warehouse, staged, session):
    ref = to_file(session.stages, "@pics", "food/coffee.jpg")
    session.sql("CREATE TABLE refs (id INTEGER, image file)")
    session.sql("INSERT INTO refs VALUES (1, ?)", [ref.as_row()])
    session.close()
    import sightql

    with sightql.connect(warehouse, read_only=True) as again:
        row = again.sql("SELECT image FROM refs").to_pylist()[0]["image"]
    assert FileRef.from_row(row) == ref


def test_a_file_column_is_read_back_from_the_fields_a_read_checks(session, staged):
    ref = to_file(session.stages, "@pics", "food/coffee.jpg")
    column = session.sql("SELECT * FROM (VALUES (?::file), (NULL::file)) AS t(image)", [ref.as_row()]).column("image")
    read, none = file_refs(column.combine_chunks())
    assert (read.stage, read.relative_path, read.size, read.etag, read.stage_name) == (
        "@pics", "food/coffee.jpg", ref.size, ref.etag, "pics")
    assert none is None
