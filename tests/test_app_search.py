"""The Search page: create an index, search by upload or by one of the table's images, near-duplicates.

Real photos (scikit-image / scikit-learn samples) in a real temporary warehouse, embedded by the bundled model.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pytest
from PIL import Image

import sightql
from tests.app_pages import page, texts
from tests.test_search import fresh_home, search_models  # noqa: F401  (a fixture: both exports, once)

pytestmark = pytest.mark.slow

PHOTOS = ("chelsea.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg", "china.jpg", "flower.jpg")
UPLOAD, PICK = "Upload an image", "Pick one of the table's images"


@pytest.fixture
def home(tmp_path, search_models):  # noqa: F811
    return fresh_home(tmp_path, search_models)


def copy_of(data: bytes, scale: float = 1.0, quality: int = 60) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.resize((int(image.width * scale), int(image.height * scale)), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def stored_photos(home, photos_dir, index: bool = True, extra: tuple[tuple[str, bytes], ...] = ()) -> None:
    """``photos``: FILE values in the internal stage, keyed by relative_path (what the Recognize page stores)."""
    with sightql.connect(home) as session:
        session.store_images("photos", [(name, (photos_dir / name).read_bytes()) for name in PHOTOS] + list(extra))
        if index:
            session.create_index("photos")


def blob_table(home, photos_dir) -> None:
    """``pics``: BLOBs keyed by an id primary key, indexed."""
    with sightql.connect(home) as session:
        session.sql("CREATE TABLE pics (id VARCHAR PRIMARY KEY, image BLOB)")
        rows = pa.table({"id": [name.split(".")[0] for name in PHOTOS],
                         "image": pa.array([(photos_dir / name).read_bytes() for name in PHOTOS], pa.binary())})
        session.con.register("_rows", rows)
        session.sql("INSERT INTO pics SELECT id, image FROM _rows")
        session.con.unregister("_rows")
        session.create_index("pics")


def results(at) -> list[tuple[str, float]]:
    """(key, distance) of each result cell, in rank order: '**1.** `chelsea.jpg` · distance 0.0000'."""
    cells = [m.value for m in at.markdown if m.value.startswith("**") and "· distance" in m.value]
    return [(cell.split("`")[1], float(cell.rsplit(" ", 1)[1])) for cell in cells]


def test_without_an_index_the_page_says_so_and_creates_one(home, photos_dir, monkeypatch):
    stored_photos(home, photos_dir, index=False)
    at = page("search", home, monkeypatch).run()
    assert not at.exception and not at.error
    assert any(t.startswith("No table has a search index yet.") for t in texts(at))
    assert not at.tabs and not at.get("file_uploader")
    table, model = at.selectbox
    assert table.options == ["photos.image"] and model.options[0] == "imagenet"  # no bookkeeping table
    at.button[0].click().run()  # Create index
    assert not at.exception and not at.error
    [done] = at.success
    assert done.value.startswith(f"index of photos: embedded {len(PHOTOS)} row(s) (0 error row(s))")
    assert [tab.label for tab in at.tabs] == ["Similar images", "Near-duplicates"]
    with sightql.connect(home) as session:
        [index] = session.indexes()
    assert (index["table"], index["image"], index["model"], index["dimension"]) == ("photos", "image", "imagenet", 1280)


def test_an_upload_finds_k_images_its_own_row_first(home, photos_dir, monkeypatch):
    stored_photos(home, photos_dir)
    at = page("search", home, monkeypatch).run()
    assert not at.exception and not at.error
    assert at.radio[0].value == UPLOAD
    assert "Give a query above to see the nearest images of the table." in texts(at)
    at.slider(key="search_k").set_value(4)
    at.get("file_uploader")[0].set_value(("chelsea.jpg", (photos_dir / "chelsea.jpg").read_bytes(), "image/jpeg"))
    at.run()
    assert not at.exception and not at.error
    found = results(at)
    assert len(found) == 4 and len({key for key, _ in found}) == 4
    assert found[0] == ("chelsea.jpg", 0.0)
    assert all(key in PHOTOS for key, _ in found)
    assert [d for _, d in found] == sorted(d for _, d in found) and found[1][1] > 0.1
    assert len(at.get("image")) == 1 + 4  # the query, then one thumbnail per result
    assert "4 nearest image(s) of photos" in [h.value for h in at.subheader]


def test_an_upload_that_is_no_image_is_one_sentence(home, photos_dir, monkeypatch):
    stored_photos(home, photos_dir)
    at = page("search", home, monkeypatch).run()
    at.get("file_uploader")[0].set_value(("notes.jpg", (photos_dir / "notes.txt").read_bytes(), "image/jpeg"))
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "the query image cannot be used: not an image: the bytes match no known image format"]
    assert results(at) == []


def test_picking_one_of_a_blob_tables_images_finds_it_first(home, photos_dir, monkeypatch):
    blob_table(home, photos_dir)
    at = page("search", home, monkeypatch).run()
    at.radio[0].set_value(PICK).run()
    assert not at.exception and not at.error
    pick = at.selectbox(key="search_pick")
    assert pick.options == sorted(name.split(".")[0] for name in PHOTOS)
    pick.set_value("coffee").run()
    assert not at.exception and not at.error
    found = results(at)
    assert len(found) == 6 and found[0] == ("coffee", 0.0)  # the default k is 8; the table has 6 rows
    assert sorted(key for key, _ in found) == sorted(name.split(".")[0] for name in PHOTOS)
    assert len(at.get("image")) == 1 + 6


def test_text_is_not_offered_for_an_imagenet_index_and_the_page_says_why(home, photos_dir, monkeypatch):
    stored_photos(home, photos_dir)
    at = page("search", home, monkeypatch).run()
    assert at.radio[0].options == [UPLOAD, PICK]
    why = [c.value for c in at.caption if c.value.startswith("text search")]
    assert why == ["text search needs an index built with a zero-shot model, e.g. session.create_index('photos', "
                   "model='clip') with a model logged as task='zero-shot'; the index of 'photos' uses 'imagenet'."]
    assert not at.text_input


def test_near_duplicates_lists_the_copies_with_both_thumbnails(home, photos_dir, monkeypatch):
    chelsea = (photos_dir / "chelsea.jpg").read_bytes()
    copies = (("chelsea-q60.jpg", copy_of(chelsea)), ("chelsea-half.jpg", copy_of(chelsea, 0.5, 90)))
    stored_photos(home, photos_dir, extra=copies)
    at = page("search", home, monkeypatch).run()
    at.button(key="search_find_duplicates").click().run()
    assert not at.exception and not at.error
    pairs = [m.value for m in at.markdown if m.value.startswith("distance **")]
    keys = [m.value.strip("`") for m in at.markdown if m.value.startswith("`") and m.value.endswith("`")]
    assert [h.value for h in at.subheader] == [f"{len(pairs)} pair(s) within 0.10"]
    assert set(zip(keys[::2], keys[1::2])) == {("chelsea-half.jpg", "chelsea-q60.jpg"), ("chelsea-half.jpg", "chelsea.jpg"),
                                               ("chelsea-q60.jpg", "chelsea.jpg")}
    distances = [float(p.split("**")[1]) for p in pairs]
    assert distances == sorted(distances) and distances[-1] <= 0.1
    assert len(at.get("image")) == 2 * len(pairs)
    at.slider(key="search_threshold").set_value(0.0)
    at.button(key="search_find_duplicates").click().run()
    assert "No two images of photos are within 0.00 of each other." in texts(at)
