"""classify / classify_topk / image_info in SQL, on a real warehouse with the real bundled model."""

from __future__ import annotations

import pytest

import sightql
from sightql.errors import SightQLError
from tests.conftest import CAT_CLASSES


@pytest.fixture
def photos(session, photos_dir):
    report = session.load_images("photos", photos_dir)
    assert report.skipped and report.skipped[0][0] == "notes.txt"
    return session


def _top1(session, name):
    rows = session.sql(
        "SELECT classify('imagenet', image) AS c FROM photos WHERE relative_path = ?", [name]
    ).to_pylist()
    return rows[0]["c"]


def test_chelsea_is_a_cat_and_coffee_is_espresso(photos):
    chelsea = _top1(photos, "chelsea.jpg")
    assert chelsea["label"] in CAT_CLASSES and chelsea["error"] is None
    coffee = _top1(photos, "coffee.jpg")
    assert coffee["label"] == "espresso" and coffee["score"] > 0.5


def test_topk_is_sorted_and_starts_with_classify(photos):
    rows = photos.sql(
        "SELECT classify('imagenet', image) AS c, classify_topk('imagenet', image, 5) AS t FROM photos"
    ).to_pylist()
    assert len(rows) == 8
    for row in rows:
        scores = [item["score"] for item in row["t"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)
        assert row["t"][0]["label"] == row["c"]["label"]
        assert row["t"][0]["score"] == pytest.approx(row["c"]["score"])


def test_image_info_reads_headers(photos):
    info = photos.sql("SELECT image_info(image) AS i FROM photos WHERE relative_path = 'camera.png'").to_pylist()[0]["i"]
    assert (info["width"], info["height"], info["format"], info["mode"]) == (512, 512, "PNG", "L")


def test_bad_rows_get_null_and_an_error_while_good_rows_are_labelled(session, photos_dir):
    good = {name: (photos_dir / name).read_bytes() for name in ("chelsea.jpg", "coffee.jpg")}
    jpeg = good["coffee.jpg"]
    bad = {
        "corrupt.jpg": jpeg[:20] + bytes(reversed(jpeg[20:4000])) + jpeg[4000:],
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "empty.jpg": b"",
        "text.jpg": b"this is not an image, it is text\n",
    }
    session.sql("CREATE TABLE mixed (name VARCHAR, image BLOB)")
    for name, data in {**bad, **good}.items():
        session.sql("INSERT INTO mixed VALUES (?, ?)", [name, data])
    session.sql("INSERT INTO mixed VALUES ('null.jpg', NULL)")
    rows = {
        r["name"]: r["c"]
        for r in session.sql("SELECT name, classify('imagenet', image) AS c FROM mixed").to_pylist()
    }
    for name in [*bad, "null.jpg"]:
        assert rows[name]["label"] is None and rows[name]["score"] is None, name
        assert rows[name]["error"], name
    assert "0 bytes" in rows["empty.jpg"]["error"]
    assert "not an image" in rows["text.jpg"]["error"]
    assert rows["coffee.jpg"]["label"] == "espresso" and rows["coffee.jpg"]["error"] is None
    assert rows["chelsea.jpg"]["label"] in CAT_CLASSES
    topk = session.sql("SELECT name, classify_topk('imagenet', image, 3) AS t FROM mixed WHERE name = 'text.jpg'").to_pylist()
    assert topk[0]["t"] is None


def test_strict_session_fails_loudly_on_a_bad_image(warehouse):
    with sightql.connect(warehouse, on_error="raise") as strict:
        strict.sql("CREATE TABLE t AS SELECT 'x'::BLOB AS image")
        with pytest.raises(SightQLError, match="not an image"):
            strict.sql("SELECT classify('imagenet', image) FROM t")


def test_rows_stay_aligned_across_batches_and_chunks(warehouse, photos_dir):
    """Each row's answer equals that image classified alone, whatever the batch boundaries."""
    from sightql.config import Settings

    names = sorted(p.name for p in photos_dir.glob("*.jpg"))
    alone = {}
    with sightql.connect(warehouse) as s:
        for name in names:
            alone[name] = s.classify([(photos_dir / name).read_bytes()], k=1)[0]["top"][0]
    with sightql.connect(warehouse, settings=Settings(batch_size=3, decode_threads=2)) as s:
        s.sql("CREATE TABLE rep (i INTEGER, name VARCHAR, image BLOB)")
        for i in range(25):
            name = names[(i * 5) % len(names)]
            s.sql("INSERT INTO rep VALUES (?, ?, ?)", [i, name, (photos_dir / name).read_bytes()])
        rows = s.sql("SELECT name, classify('imagenet', image) AS c FROM rep ORDER BY i").to_pylist()
    for row in rows:
        assert row["c"]["label"] == alone[row["name"]]["label"]
        assert row["c"]["score"] == pytest.approx(alone[row["name"]]["score"], abs=1e-5)


def test_unknown_model_is_one_clear_sentence(photos):
    with pytest.raises(SightQLError, match="no model named 'nope'"):
        photos.sql("SELECT classify('nope', image) FROM photos")


def test_sql_binds_named_parameters_and_gives_arrow_or_pandas(photos):
    table = photos.sql("SELECT relative_path, width FROM photos WHERE width > $w ORDER BY 1", {"w": 500})
    frame = table.to_pandas()
    assert list(frame.columns) == ["relative_path", "width"]
    assert len(frame) > 0 and (frame["width"] > 500).all()
    assert "coffee.jpg" in set(frame["relative_path"])


def test_running_out_of_duckdb_memory_names_the_setting_to_raise(warehouse, photos_dir):
    import dataclasses

    from sightql.config import Settings

    with sightql.connect(warehouse) as s:
        s.load_images("photos", photos_dir, inline=True)  # BLOBs: the 2,048-row vector DuckDB holds
        s.sql("CREATE TABLE many AS SELECT p.image FROM photos p, range(100)")
    tight = dataclasses.replace(Settings.from_env(), memory_limit="48MB")
    with sightql.connect(warehouse, settings=tight) as s:
        with pytest.raises(SightQLError, match=r"memory limit; raise SIGHTQL_MEMORY_LIMIT"):
            s.sql("SELECT image_info(image) FROM many LIMIT 600")
