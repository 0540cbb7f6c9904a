"""Scale-out: with an s3:// stage the Dask driver ships references only, and a cluster at a scheduler
address gets the model's files from the driver (its workers may not see the warehouse folder).

The S3 server (moto, on loopback) counts the object bytes it sends to each client process: it
looks up which process owns the client end of each GET's connection. That is independent of
SightQL's own code paths, so a byte read by the driver in any way (stage reads, fsspec, boto)
would show up under the driver's process id.
"""

from __future__ import annotations

import io
import os
import socket
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import pytest
from PIL import Image

from sightql.errors import ArtifactIntegrityError, DistributedError
from sightql.images.preprocess import preprocess
from sightql.inference.runners import DaskRunner
from sightql.registry.specs import load_model
from sightql.stages.files import to_file
from tests.registry_models import tiny_classifier, write_onnx
from tests.test_batch_predict import ROOT, stored

IMAGES = 30


class CountingS3:
    """A moto S3 server on loopback that counts the bytes of object bodies it sends, per client process."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        self.sent: Counter[int] = Counter()  # process id -> object bytes sent to it
        self.parents: dict[int, list[int]] = {}
        self._lock = threading.Lock()
        moto_app = DomainDispatcherApplication(create_backend_app)

        def app(environ, start_response):
            body = moto_app(environ, start_response)
            if environ["REQUEST_METHOD"] != "GET" or not self._is_object(environ):
                return body
            pid = self._client_pid(environ["REMOTE_ADDR"], int(environ["REMOTE_PORT"]))
            chunks = list(body)
            with self._lock:
                self.sent[pid] += sum(len(c) for c in chunks)
            return chunks

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self._server = make_server("127.0.0.1", port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def _is_object(environ) -> bool:
        """A GetObject (path-style /bucket/key, no listing query), not a bucket listing."""
        parts = environ.get("PATH_INFO", "").lstrip("/").split("/", 1)
        return len(parts) == 2 and parts[1] != "" and "list-type" not in environ.get("QUERY_STRING", "")

    def _client_pid(self, address: str, port: int) -> int:
        import psutil

        for conn in psutil.net_connections("tcp"):
            if conn.laddr and (conn.laddr.ip, conn.laddr.port) == (address, port) and conn.pid:
                if conn.pid not in self.parents:
                    try:
                        self.parents[conn.pid] = [p.pid for p in psutil.Process(conn.pid).parents()]
                    except psutil.Error:
                        self.parents[conn.pid] = []
                return conn.pid
        return -1  # not found: counted under -1, which the test treats as possibly the driver

    def reset(self) -> None:
        with self._lock:
            self.sent.clear()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


@pytest.fixture
def counting_s3(monkeypatch):
    """The counting server, with the endpoint and credentials in this process's environment; the
    local cluster's worker processes inherit them when they start (the driver sends none)."""
    server = CountingS3()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("SIGHTQL_S3_ENDPOINT_URL", server.endpoint)
    import boto3

    import httpx

    httpx.post(f"{server.endpoint}/moto-api/reset")  # moto keeps buckets per process, across servers: start empty
    boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1").create_bucket(Bucket="images")
    yield server
    httpx.post(f"{server.endpoint}/moto-api/reset")
    server.stop()


def distinct_photos(photos_dir: Path, folder: Path, count: int) -> dict[str, int]:
    """``count`` distinct JPEGs cut from the sample photos; their names and sizes."""
    sources = sorted(p for p in photos_dir.iterdir() if p.suffix == ".jpg")
    folder.mkdir()
    sizes = {}
    for index in range(count):
        with Image.open(sources[index % len(sources)]) as photo:
            width, height = photo.size
            shift = 8 * (index // len(sources))
            crop = photo.convert("RGB").crop((shift, shift, width - shift, height - shift))
        out = io.BytesIO()
        crop.save(out, format="JPEG", quality=90)
        name = f"img_{index:03d}.jpg"
        (folder / name).write_bytes(out.getvalue())
        sizes[name] = len(out.getvalue())
    return sizes


def assert_only_workers_read(server: CountingS3, expected_bytes: int) -> None:
    driver = os.getpid()
    assert server.sent[driver] == 0, "the driver read image bytes"
    assert -1 not in server.sent, "a GET came from a process that could not be identified"
    workers = {pid: sent for pid, sent in server.sent.items() if sent}
    assert 1 <= len(workers) <= 2
    assert all(driver in server.parents[pid] for pid in workers), "bytes went to a process outside this cluster"
    assert sum(workers.values()) == expected_bytes  # each image read once, by one worker


def answers(session, table: str) -> dict:
    rows = stored(session, table)
    return {k: (r["predicted_label"], round(r["confidence"], 5), r["predicted_sha256"], r["prediction_error"])
            for k, r in rows.items()}


@pytest.mark.dask
@pytest.mark.slow
def test_the_driver_reads_no_image_bytes_of_a_file_table_or_a_stage_on_s3(counting_s3, session, photos_dir, tmp_path):
    sizes = distinct_photos(photos_dir, tmp_path / "photos", IMAGES)
    session.create_stage("cloud", "s3://images/raw").put(tmp_path / "photos", prefix="in")
    session.sql("CREATE TABLE t (relative_path VARCHAR PRIMARY KEY, image file)")
    for name in sizes:
        session.sql("INSERT INTO t VALUES (?, ?)", [name, to_file(session.stages, "@cloud/in", name).as_row()])
    runner = DaskRunner(workers=2)

    counting_s3.reset()
    table_report = session.predict("imagenet", "t", into="by_dask", runner=runner, chunk_rows=4, progress=False)
    assert (table_report.predicted, table_report.errors) == (IMAGES, 0)
    assert_only_workers_read(counting_s3, sum(sizes.values()))

    counting_s3.reset()
    stage_report = session.predict("imagenet", "@cloud/in", into="stage_by_dask", runner=runner, chunk_rows=4,
                                   progress=False)
    assert (stage_report.predicted, stage_report.errors) == (IMAGES, 0)
    assert_only_workers_read(counting_s3, sum(sizes.values()))

    counting_s3.reset()
    local = session.predict("imagenet", "t", into="by_local", progress=False)
    assert local.predicted == IMAGES
    assert counting_s3.sent[os.getpid()] == sum(sizes.values())  # the counter sees a driver that does read
    expected = answers(session, "by_local")
    assert answers(session, "by_dask") == expected
    by_stage = answers(session, "stage_by_dask")
    assert {k: v[:2] for k, v in by_stage.items()} == {f"in/{k}": v[:2] for k, v in expected.items()}


def file_table_on_s3(session, photos_dir: Path, folder: Path, count: int) -> dict[str, int]:
    sizes = distinct_photos(photos_dir, folder, count)
    session.create_stage("cloud", "s3://images/raw").put(folder, prefix="in")
    session.sql("CREATE TABLE t (relative_path VARCHAR PRIMARY KEY, image file)")
    for name in sizes:
        session.sql("INSERT INTO t VALUES (?, ?)", [name, to_file(session.stages, "@cloud/in", name).as_row()])
    return sizes


def test_a_worker_that_cannot_see_the_warehouse_loads_the_model_the_driver_shipped(session, photos_dir, tmp_path):
    pytest.importorskip("distributed")
    from sightql.inference.runners.dask_model import ShipModel, model_files, model_key, worker_spec

    session.registry.log_model(write_onnx(tiny_classifier(3, seed=2), tmp_path / "m.onnx"), "defects",
                               labels=["crack", "dent", "ok"])
    photo = (photos_dir / "coffee.jpg").read_bytes()
    elsewhere = tmp_path / "another-machine" / "warehouse"  # the driver's folder, as a remote worker sees it: absent
    for ref in ("defects", "imagenet"):
        spec = session.registry.spec(ref, "cpu")
        remote = replace(spec, home=str(elsewhere))
        if ref == "defects":
            with pytest.raises(ArtifactIntegrityError, match="missing"):
                load_model(remote)
        worker = SimpleNamespace(local_directory=str(tmp_path / f"worker-{ref}"))
        ShipModel(model_key(spec), model_files(spec)).setup(worker)
        shipped = load_model(worker_spec(remote))
        assert shipped.model_version == spec.model_version
        pixels = preprocess(photo, shipped.card.input)[None]
        assert np.array_equal(shipped.predict(pixels), load_model(spec).predict(pixels))
    assert not elsewhere.exists()  # nothing was exported or written at the driver's path


def test_a_worker_on_another_machine_is_told_why_a_blob_table_cannot_reach_it(session, tmp_path):
    pytest.importorskip("distributed")
    from sightql.inference.pipeline import PredictOptions
    from sightql.inference.runners.dask import TableRangeTask, run_range

    unseen = tmp_path / "driver-only" / "range-000000.parquet"  # the driver's temporary folder, not on this worker
    spec = session.registry.spec("imagenet", "cpu")
    with pytest.raises(DistributedError, match="cannot see .* FILE values"):
        run_range(spec, PredictOptions(batch_size=8, top_k=0, limits=session.warehouse.limits), TableRangeTask(str(unseen), "VARCHAR"))
