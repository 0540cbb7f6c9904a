"""The files people really have, through every path at default settings: 20 phone photos (4032x3024,
EXIF orientation 6, 3.3-3.5 MB), an iPhone-style HEIC, an AVIF and a 12-bit DICOM, in a stage read
by ``stage_file`` in SQL, predicted from the stage, and sent to the HTTP API.

(Loading them into a table, SQL over it and ``predict`` over the table are in test_loading.py and
test_uploads.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import sightql
from sightql.api import ApiLimits, create_app
from sightql.config import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def real_files(tmp_path, phone_photos_dir, heic_bytes, avif_bytes, dicom_bytes) -> Path:
    folder = tmp_path / "real-files"
    folder.mkdir()
    for photo in sorted(phone_photos_dir.iterdir()):
        (folder / photo.name).write_bytes(photo.read_bytes())
    (folder / "IMG_0100.HEIC").write_bytes(heic_bytes)
    (folder / "coffee.avif").write_bytes(avif_bytes)
    (folder / "chest.dcm").write_bytes(dicom_bytes)
    return folder


def default_settings(monkeypatch) -> Settings:
    for name in ("SIGHTQL_MEMORY_LIMIT", "SIGHTQL_BATCH_SIZE", "SIGHTQL_MAX_IMAGE_BYTES", "SIGHTQL_MAX_IMAGE_PIXELS"):
        monkeypatch.delenv(name, raising=False)
    return Settings.from_env()


def test_a_stage_of_real_files_classifies_with_stage_file_in_sql_and_predicts(warehouse, real_files, monkeypatch):
    with sightql.connect(warehouse, settings=default_settings(monkeypatch)) as s:
        s.create_stage("phone").put(real_files)
        rows = s.sql(
            "SELECT relative_path, image_info(stage_file('@phone', relative_path)) AS info, "
            "classify('imagenet', stage_file('@phone', relative_path)) AS top FROM directory('@phone')"
        ).to_pylist()
        assert len(rows) == 23
        for row in rows:
            assert row["top"]["error"] is None and row["top"]["label"], row
            assert row["info"]["error"] is None, row
        info = {row["relative_path"]: row["info"] for row in rows}
        assert (info["IMG_0000.jpg"]["width"], info["IMG_0000.jpg"]["height"]) == (3024, 4032)  # as shown
        assert info["IMG_0100.HEIC"]["format"] == "HEIF" and info["coffee.avif"]["format"] == "AVIF"
        assert info["chest.dcm"]["format"] == "DICOM"

        report = s.predict("imagenet", "@phone", into="phone_labels", progress=False)
        assert (report.predicted, report.errors) == (23, 0)
        labelled = s.sql("SELECT count(*) AS n FROM phone_labels WHERE predicted_label IS NOT NULL").to_pylist()
        assert labelled == [{"n": 23}]


def test_the_api_answers_for_a_phone_photo_heic_avif_and_dicom_in_one_request(warehouse, real_files, monkeypatch):
    default_settings(monkeypatch)
    names = ["IMG_0000.jpg", "IMG_0100.HEIC", "coffee.avif", "chest.dcm"]
    files = [("file", (name, (real_files / name).read_bytes(), "application/octet-stream")) for name in names]
    with TestClient(create_app(warehouse, None, ApiLimits())) as client:
        answer = client.post("/v1/models/imagenet/predict?k=3", files=files)
    assert answer.status_code == 200, answer.text
    items = answer.json()["predictions"]
    assert len(items) == 4
    for name, item in zip(names, items):
        assert item["error"] is None and len(item["top"]) == 3, (name, item)
    with sightql.connect(warehouse) as s:  # the same labels as SQL gives for the same bytes
        for name, item in zip(names, items):
            top = s.sql("SELECT classify_topk('imagenet', ?, 3) AS t", [(real_files / name).read_bytes()]).to_pylist()
            assert [t["label"] for t in top[0]["t"]] == [t["label"] for t in item["top"]], name
