"""store_images: uploads into an image table, checked, once per content; classify_stored on those rows."""

from __future__ import annotations

import pytest

from sightql.errors import ConfigError, TableError
from sightql.explore.topk import classify_stored
from sightql.ingest.uploads import stored_images, upload_name
from tests.conftest import CAT_CLASSES


@pytest.fixture
def chelsea(photos_dir) -> bytes:
    return (photos_dir / "chelsea.jpg").read_bytes()


def rows(session, table="uploads"):
    return session.sql(f"SELECT relative_path, sha256, size, width, height, format FROM {table} ORDER BY relative_path").to_pylist()


def test_good_images_are_stored_and_bad_ones_reported(session, photos_dir, chelsea):
    report = session.store_images("uploads", [("chelsea.jpg", chelsea), ("notes.txt", b"not an image"), ("empty.png", b"")])
    assert [(i.name, i.relative_path, i.new) for i in report.stored] == [("chelsea.jpg", "chelsea.jpg", True)]
    assert report.skipped == [
        ("notes.txt", "not an image: the bytes match no known image format"),
        ("empty.png", "empty file (0 bytes)"),
    ]
    [row] = rows(session)
    assert (row["relative_path"], row["size"], row["width"], row["height"], row["format"]) == ("chelsea.jpg", len(chelsea), 451, 300, "JPEG")
    assert str(report).startswith("stored 1 new image(s) in uploads; 0 already there; skipped 2")


def test_storing_again_never_inserts_twice(session, chelsea, photos_dir):
    coffee = (photos_dir / "coffee.jpg").read_bytes()
    session.store_images("uploads", [("chelsea.jpg", chelsea)])
    again = session.store_images("uploads", [("renamed.jpg", chelsea), ("coffee.jpg", coffee), ("coffee copy.jpg", coffee)])
    assert [(i.relative_path, i.new) for i in again.stored] == [("chelsea.jpg", False), ("coffee.jpg", True), ("coffee.jpg", False)]
    assert [r["relative_path"] for r in rows(session)] == ["chelsea.jpg", "coffee.jpg"]


def test_a_taken_name_with_other_bytes_gets_a_suffix_and_replaces_nothing(session, chelsea, photos_dir):
    coffee = (photos_dir / "coffee.jpg").read_bytes()
    session.store_images("uploads", [("photo.jpg", chelsea)])
    [other] = session.store_images("uploads", [("photo.jpg", coffee)]).stored
    assert other.relative_path == f"photo-{other.sha256[:8]}.jpg" and other.new
    assert {r["relative_path"]: r["size"] for r in rows(session)} == {"photo.jpg": len(chelsea), other.relative_path: len(coffee)}


def test_over_the_byte_limit_is_reported_not_stored(warehouse, chelsea, monkeypatch):
    import sightql

    monkeypatch.setenv("SIGHTQL_MAX_IMAGE_BYTES", "1000")
    with sightql.connect(warehouse) as small:
        report = small.store_images("uploads", [("chelsea.jpg", chelsea)])
        assert report.stored == [] and "over the 1,000-byte limit" in report.skipped[0][1]
        assert rows(small) == []


@pytest.mark.parametrize(
    "raw, cleaned",
    [("../../etc/passwd", "passwd"), ("C:\\Users\\me\\cat.jpg", "cat.jpg"), ("a\x00b\nc.png", "abc.png"), ("..", "upload"), ("", "upload")],
)
def test_client_file_names_become_plain_names(raw, cleaned):
    assert upload_name(raw) == cleaned


def test_names_with_quotes_are_bound_not_pasted(session, chelsea):
    name = "it's \"quoted\"; DROP TABLE uploads; --.jpg"
    [stored] = session.store_images("uploads", [(name, chelsea)]).stored
    assert stored.relative_path == name and rows(session)[0]["relative_path"] == name


def test_bad_table_names_and_non_image_tables_are_refused(session, chelsea):
    with pytest.raises(ConfigError, match="table name 'up loads' is not allowed"):
        session.store_images("up loads", [("chelsea.jpg", chelsea)])
    session.sql("CREATE TABLE notes (text VARCHAR)")
    with pytest.raises(TableError, match="lacks image columns"):
        session.store_images("notes", [("chelsea.jpg", chelsea)])


def test_classify_stored_gives_top_k_from_the_table(session, chelsea, photos_dir):
    session.store_images("uploads", [("chelsea.jpg", chelsea), ("coffee.jpg", (photos_dir / "coffee.jpg").read_bytes())])
    assert session.store_images("uploads", [("broken.jpg", chelsea[: len(chelsea) // 2])]).stored  # header whole, pixels cut
    results = classify_stored(session.warehouse, "uploads", ["chelsea.jpg", "coffee.jpg", "broken.jpg", "absent.jpg"], "imagenet", 5)
    assert set(results) == {"chelsea.jpg", "coffee.jpg", "broken.jpg"}
    chelsea_top = results["chelsea.jpg"]["top"]
    assert len(chelsea_top) == 5 and chelsea_top[0]["label"] in CAT_CLASSES and results["chelsea.jpg"]["error"] is None
    assert [s["score"] for s in chelsea_top] == sorted((s["score"] for s in chelsea_top), reverse=True)
    assert results["coffee.jpg"]["top"][0]["label"] == "espresso"
    assert results["broken.jpg"]["top"] is None and "runcated" in results["broken.jpg"]["error"]
    assert session.sql("SELECT typeof(image) AS t FROM uploads LIMIT 1").column("t")[0].as_py() != "BLOB"  # FILE values
    table = stored_images(session.warehouse, session.stages, "uploads", ["coffee.jpg", "chelsea.jpg"])
    assert table.column("relative_path").to_pylist() == ["chelsea.jpg", "coffee.jpg"]
    assert table.column("image")[0].as_py() == chelsea  # read back from the internal stage


def test_uploads_into_an_inline_table_stay_inline(session, chelsea, photos_dir):
    session.load_images("uploads", photos_dir, inline=True)
    [stored] = session.store_images("uploads", [("new-chelsea.jpg", chelsea + b"\x00")]).stored
    assert stored.new
    assert session.sql("SELECT DISTINCT typeof(image) AS t FROM uploads").column("t").to_pylist() == ["BLOB"]
    table = stored_images(session.warehouse, session.stages, "uploads", [stored.relative_path])
    assert table.column("image")[0].as_py() == chelsea + b"\x00"


def test_classify_runs_the_model_once_per_image(session, chelsea):
    from sightql import engine

    seen = []
    original = engine.predict_rows

    def counting(predictor, images, **kwargs):
        seen.append(len(images))
        return original(predictor, images, **kwargs)

    import sightql.functions.image_functions as functions

    functions.predict_rows, saved = counting, functions.predict_rows
    try:
        [good, bad] = session.classify([chelsea, b"junk"], k=3)
    finally:
        functions.predict_rows = saved
    assert good["top"][0]["label"] in CAT_CLASSES and bad["top"] is None and bad["error"].startswith("not an image")
    assert seen == [2, 1]  # classify_topk on both rows, then classify only on the row left NULL, for its error


def test_phone_heic_avif_and_dicom_are_stored_with_their_format_and_shown_size_and_classified_in_sql(
    session, phone_photos_dir, heic_bytes, avif_bytes, dicom_bytes
):
    phone = (phone_photos_dir / "IMG_0000.jpg").read_bytes()
    report = session.store_images(
        "uploads", [("IMG_0000.jpg", phone), ("cat.heic", heic_bytes), ("coffee.avif", avif_bytes), ("chest.dcm", dicom_bytes)]
    )
    assert report.skipped == [] and len(report.added) == 4
    stored = {r["relative_path"]: (r["format"], r["width"], r["height"]) for r in rows(session)}
    assert stored == {
        "IMG_0000.jpg": ("JPEG", 3024, 4032), "cat.heic": ("HEIF", 756, 1008),
        "coffee.avif": ("AVIF", 756, 1008), "chest.dcm": ("DICOM", 512, 512),
    }
    results = session.sql(
        "SELECT relative_path, image_info(image) AS info, classify('imagenet', image) AS c FROM uploads ORDER BY 1"
    ).to_pylist()
    info = {r["relative_path"]: (r["info"]["format"], r["info"]["width"], r["info"]["height"]) for r in results}
    assert info == stored
    labels = {r["relative_path"]: r["c"]["label"] for r in results}
    assert all(r["c"]["error"] is None for r in results) and None not in labels.values()
    assert labels["cat.heic"] in CAT_CLASSES and labels["IMG_0000.jpg"] in CAT_CLASSES
    assert labels["coffee.avif"] == "espresso"
