"""One warehouse, two processes: a `sightql predict` job and a live API server take turns on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import httpx
import pytest

import sightql
from sightql.models.loader import builtin_version
from tests.api_server import running_server

TOKEN = "concurrency-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COPIES = 5  # 8 photos x 5 = 40 rows


@pytest.mark.slow
def test_api_requests_and_a_cli_predict_job_share_one_warehouse(warehouse, photos_dir, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for photo in sorted(photos_dir.glob("*.*")):
        if photo.suffix != ".txt":
            for copy in range(COPIES):
                shutil.copy(photo, images / f"{photo.stem}-{copy}{photo.suffix}")
    with sightql.connect(warehouse) as session:
        session.load_images("photos", images)
        before = session.sql("SELECT relative_path, sha256 FROM photos ORDER BY 1").to_pylist()
    assert len(before) == 40

    # The API gives up on a held warehouse after 0.25 s; the CLI job waits up to 30 s for its turn.
    with running_server(warehouse, {"SIGHTQL_API_TOKEN": TOKEN, "SIGHTQL_LOCK_WAIT": "0.25"}) as server:
        coffee = (photos_dir / "coffee.jpg").read_bytes()
        url = f"{server.base}/v1/models/imagenet/predict?k=1"

        def ask() -> httpx.Response:
            return httpx.post(url, headers=AUTH, files={"file": ("coffee.jpg", coffee)}, timeout=60)

        assert ask().status_code == 200  # the model is loaded before the job starts
        job = subprocess.Popen(
            [sys.executable, "-m", "sightql", "predict", "-m", "imagenet", "-t", "photos", "--no-progress",
             "-w", str(warehouse)],
            env={**os.environ, "SIGHTQL_LOCK_WAIT": "30"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        # How many requests overlap the job is up to the scheduler, so no count is asserted: each
        # answer follows the rules (a prediction, or a 503 naming the job). A 503 made certain, with
        # a held warehouse, is tests/test_api.py::test_a_held_warehouse_gives_503_naming_the_holder_then_works_again.
        while job.poll() is None:
            response = ask()
            if response.status_code == 200:
                assert response.json()["predictions"][0]["top"][0]["label"] == "espresso"
            else:
                assert response.status_code == 503, response.text
                detail = response.json()["detail"]
                assert f"is in use by process {job.pid} (" in detail and "sightql predict" in detail, detail
                assert response.headers["retry-after"] == "1"
            time.sleep(0.1)  # a client between requests, so the warehouse is free most of the time
        out, err = job.communicate()
        assert job.returncode == 0, err
        assert "predicted 40 row(s) of photos" in out
        assert ask().status_code == 200  # the API has the warehouse again once the job is done
    assert "Traceback" not in server.stderr

    with sightql.connect(warehouse) as session:
        after = session.sql(
            "SELECT relative_path, sha256, predicted_label, model_version, prediction_error, predicted_sha256 "
            "FROM photos ORDER BY 1"
        ).to_pylist()
        labels_per_photo = session.sql(
            "SELECT regexp_replace(relative_path, '-[0-9]+\\.', '.') AS photo, count(DISTINCT predicted_label) AS n "
            "FROM photos GROUP BY 1"
        ).to_pylist()
    assert [(r["relative_path"], r["sha256"]) for r in after] == [(r["relative_path"], r["sha256"]) for r in before]
    for row in after:
        assert row["predicted_label"] and row["prediction_error"] is None, row
        assert row["model_version"] == builtin_version("imagenet") and row["predicted_sha256"] == row["sha256"]
    assert len(labels_per_photo) == 8 and all(r["n"] == 1 for r in labels_per_photo)  # copies agree
