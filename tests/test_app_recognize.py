"""The Recognize page: uploads stored once in `uploads` and labelled through classify_topk."""

from __future__ import annotations

import pytest

from tests.app_pages import page, texts
from tests.conftest import CAT_CLASSES
from tests.registry_models import tiny_classifier, write_onnx


def upload(at, *files):
    at.get("file_uploader")[0].set_value(list(files))
    return at.run()


def stored(warehouse):
    import sightql

    with sightql.connect(warehouse) as s:
        return s.sql("SELECT relative_path, sha256, width, height, format FROM uploads ORDER BY relative_path").to_pylist()


def test_an_upload_is_stored_once_and_labelled_a_cat(warehouse, photos_dir, monkeypatch):
    chelsea = (photos_dir / "chelsea.jpg").read_bytes()
    at = page("recognize", warehouse, monkeypatch).run()
    assert not at.exception and "Upload one or more images to recognize them." in texts(at)
    upload(at, ("chelsea.jpg", chelsea, "image/jpeg"))
    assert not at.exception and not at.error
    best = at.markdown[0].value  # e.g. '**tiger cat — 39.5%**'
    label = best.strip("*").split(" — ")[0]
    assert label in CAT_CLASSES and best.endswith("%**")
    bars = at.get("progress")
    assert len(bars) == 5 and bars[0].proto.text.startswith(label)
    assert [b.value for b in bars] == sorted((b.value for b in bars), reverse=True)
    assert any("stored in `uploads` as `chelsea.jpg`" in t for t in texts(at))
    rows = stored(warehouse)
    assert [(r["relative_path"], r["width"], r["height"], r["format"]) for r in rows] == [("chelsea.jpg", 451, 300, "JPEG")]
    at.run()  # Streamlit reruns the page on every interaction, the upload still in place
    at.sidebar.selectbox[0].select("imagenet").run()
    assert not at.exception and stored(warehouse) == rows
    assert any("already in `uploads` as `chelsea.jpg`" in t for t in texts(at))


def test_a_non_image_shows_its_error_and_the_good_ones_still_work(warehouse, photos_dir, monkeypatch):
    at = page("recognize", warehouse, monkeypatch).run()
    upload(
        at,
        ("notes.jpg", (photos_dir / "notes.txt").read_bytes(), "image/jpeg"),
        ("coffee.jpg", (photos_dir / "coffee.jpg").read_bytes(), "image/jpeg"),
        ("chelsea.jpg", (photos_dir / "chelsea.jpg").read_bytes(), "image/jpeg"),
    )
    assert not at.exception
    assert [e.value for e in at.error] == ["notes.jpg: not an image: the bytes match no known image format"]
    coffee_best, chelsea_best = (m.value.strip("*").split(" — ")[0] for m in at.markdown)
    assert coffee_best == "espresso" and chelsea_best in CAT_CLASSES
    assert [r["relative_path"] for r in stored(warehouse)] == ["chelsea.jpg", "coffee.jpg"]
    assert len(at.get("image")) == 2 and len(at.get("progress")) == 10


def test_the_picker_lists_classifiers_only_and_its_choice_labels(warehouse, photos_dir, monkeypatch, tmp_path):
    import sightql

    with sightql.connect(warehouse) as s:
        s.registry.log_model(write_onnx(tiny_classifier(2, favour=1), tmp_path / "pets.onnx"), "pets", labels=["cat", "dog"])
        s.registry.get_model("pets").set_alias("prod", "v1")
        s.registry.log_model(write_onnx(tiny_classifier(8), tmp_path / "emb.onnx"), "emb", task="embedding")
        assert s.registry.refs() == ["emb", "pets", "pets@prod"]
    at = page("recognize", warehouse, monkeypatch).run()
    assert at.sidebar.selectbox[0].options == ["imagenet", "pets", "pets@prod"]
    at.sidebar.selectbox[0].select("pets@prod")
    upload(at, ("chelsea.jpg", (photos_dir / "chelsea.jpg").read_bytes(), "image/jpeg"))
    assert not at.exception and at.markdown[0].value == "**dog — 100.0%**"
    assert [p.proto.text for p in at.get("progress")] == ["dog — 100.0%", "cat — 0.0%"]


def test_a_held_warehouse_is_one_sentence_not_a_crash(warehouse, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("SIGHTQL_LOCK_WAIT", "0")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, sightql; s = sightql.connect(sys.argv[1]); print('open', flush=True); time.sleep(60)",
         str(warehouse)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        at = page("recognize", warehouse, monkeypatch).run()
    finally:
        holder.kill()
        holder.wait()
    assert not at.exception
    [error] = at.error
    assert f"is in use by process {holder.pid}" in error.value and "raise SIGHTQL_LOCK_WAIT" in error.value
