"""Batch predict: exact write-back, incremental reruns, crash-resume, bad rows, stages, runners, CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sightql
from sightql.errors import ConfigError, ModelNotFoundError, SightQLError, StageError, TableError
from sightql.images.preprocess import preprocess
from sightql.inference.runners import DaskRunner
from tests.kill_runs import kill_when_paused
from tests.registry_models import tiny_classifier, write_onnx

ROOT = Path(__file__).resolve().parents[1]
PHOTO_FILES = 8  # photos_dir holds 8 photos and notes.txt


@pytest.fixture
def photos(session, photos_dir):
    report = session.load_images("photos", photos_dir)
    assert len(report.loaded) == PHOTO_FILES
    return session


@pytest.fixture
def blob_photos(session, photos_dir):
    """``photos`` with the bytes in the table (``inline=True``), as tables made before FILE values hold them."""
    report = session.load_images("photos", photos_dir, inline=True)
    assert len(report.loaded) == PHOTO_FILES
    return session


def single_row_answer(session, model: str, data: bytes) -> tuple[str, float]:
    """The model run on this one image alone, outside the batch pipeline."""
    predictor = session.predictor(model)
    probabilities = predictor.predict(preprocess(data, predictor.card.input)[None])[0]
    best = int(np.argmax(probabilities))
    return predictor.card.labels[best], float(probabilities[best])


def stored(session, table: str, key: str = "relative_path") -> dict:
    rows = session.sql(f"SELECT * FROM {table} ORDER BY {key}").to_pylist()
    return {row[key]: row for row in rows}


def assert_exact(session, predictions: dict, images: dict[str, bytes], model: str = "imagenet") -> None:
    assert set(predictions) == set(images)
    for key, data in images.items():
        label, confidence = single_row_answer(session, model, data)
        row = predictions[key]
        assert row["prediction_error"] is None, key
        assert row["predicted_label"] == label, key
        assert row["confidence"] == pytest.approx(confidence, abs=1e-5), key


def photo_bytes(photos_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(photos_dir.iterdir()) if p.suffix in (".jpg", ".png")}


# ---- write-back ----------------------------------------------------------------------
def test_each_stored_prediction_equals_the_model_on_that_row_alone(photos, photos_dir):
    report = photos.predict("imagenet", "photos", batch_size=8, top_k=3, progress=False)
    assert (report.predicted, report.errors, report.skipped) == (PHOTO_FILES, 0, 0)
    rows = stored(photos, "photos")
    assert_exact(photos, rows, photo_bytes(photos_dir))
    # Eight different photos in one batch: not one shared probability (the tutorial's bug).
    assert len({round(r["confidence"], 6) for r in rows.values()}) == PHOTO_FILES
    assert rows["coffee.jpg"]["predicted_label"] == "espresso"
    for row in rows.values():
        assert row["model_version"].startswith("imagenet@builtin-")
        assert row["predicted_sha256"] == row["sha256"]
        assert [t["label"] for t in row["top_k"]][0] == row["predicted_label"]
        assert len(row["top_k"]) == 3 and row["top_k"][0]["score"] >= row["top_k"][1]["score"]
        assert row["predicted_at"] is not None


def test_into_a_separate_table_keyed_by_the_source_key(photos, photos_dir):
    photos.predict("imagenet", "photos", into="labels", progress=False)
    assert "predicted_label" not in photos.sql("SELECT * FROM photos LIMIT 1").column_names
    rows = stored(photos, "labels")
    assert_exact(photos, rows, photo_bytes(photos_dir))
    assert "top_k" not in photos.sql("SELECT * FROM labels LIMIT 1").column_names
    with pytest.raises(SightQLError, match="Duplicate key"):
        photos.sql("INSERT INTO labels (relative_path) VALUES ('coffee.jpg')")


# ---- incremental ------------------------------------------------------------------------
def test_second_run_skips_everything_and_a_changed_image_alone_is_predicted_again(photos, photos_dir, tmp_path):
    photos.predict("imagenet", "photos", progress=False)
    before = stored(photos, "photos")
    again = photos.predict("imagenet", "photos", progress=False)
    assert (again.predicted, again.skipped) == (0, PHOTO_FILES)

    changed = tmp_path / "changed"
    changed.mkdir()
    shutil.copy(photos_dir / "chelsea.jpg", changed / "coffee.jpg")  # new bytes under an old key
    photos.load_images("photos", changed)
    third = photos.predict("imagenet", "photos", progress=False)
    assert (third.predicted, third.skipped) == (1, PHOTO_FILES - 1)
    after = stored(photos, "photos")
    assert after["coffee.jpg"]["predicted_label"] == before["chelsea.jpg"]["predicted_label"]
    assert after["coffee.jpg"]["predicted_at"] > before["coffee.jpg"]["predicted_at"]
    for key in set(before) - {"coffee.jpg"}:
        assert after[key]["predicted_at"] == before[key]["predicted_at"]
    assert photos.predict("imagenet", "photos", recompute=True, progress=False).predicted == PHOTO_FILES


def test_a_table_without_a_sha256_column_has_it_computed(session, photos_dir):
    images = photo_bytes(photos_dir)
    session.sql("CREATE TABLE shots (id INTEGER PRIMARY KEY, picture BLOB, note VARCHAR)")
    for i, data in enumerate(images.values()):
        session.sql("INSERT INTO shots VALUES (?, ?, ?)", [i, data, f"n{i}"])
    first = session.predict("imagenet", "shots", image="picture", into="shot_labels", progress=False)
    assert first.predicted == len(images)
    assert session.predict("imagenet", "shots", image="picture", into="shot_labels", progress=False).predicted == 0
    session.sql("UPDATE shots SET picture = ? WHERE id = 2", [images["coffee.jpg"]])
    session.sql("UPDATE shots SET note = 'edited' WHERE id = 3")  # other columns do not matter
    third = session.predict("imagenet", "shots", image="picture", into="shot_labels", progress=False)
    assert third.predicted == 1
    assert stored(session, "shot_labels", "id")[2]["predicted_label"] == "espresso"


def test_a_new_model_version_or_a_larger_top_k_makes_rows_due(photos, tmp_path):
    path = write_onnx(tiny_classifier(2, favour=0), tmp_path / "xray-1.onnx")
    photos.registry.log_model(path, "xray", labels=["normal", "pneumonia"])
    photos.registry.log_model(write_onnx(tiny_classifier(2, favour=1), tmp_path / "xray-2.onnx"), "xray",
                              labels=["normal", "pneumonia"])
    model = photos.registry.get_model("xray")
    model.set_alias("prod", "v1")
    first = photos.predict("xray@prod", "photos", into="xr", progress=False)
    assert first.model_version == "xray@v1" and first.predicted == PHOTO_FILES
    assert {r["predicted_label"] for r in stored(photos, "xr").values()} == {"normal"}
    assert photos.predict("xray@prod", "photos", into="xr", top_k=2, progress=False).predicted == PHOTO_FILES
    assert photos.predict("xray@prod", "photos", into="xr", top_k=2, progress=False).predicted == 0
    model.set_alias("prod", "v2")
    moved = photos.predict("xray@prod", "photos", into="xr", progress=False)
    assert moved.model_version == "xray@v2" and moved.predicted == PHOTO_FILES
    rows = stored(photos, "xr").values()
    assert {r["predicted_label"] for r in rows} == {"pneumonia"} and {r["model_version"] for r in rows} == {"xray@v2"}


# ---- reading by row id -----------------------------------------------------------------
def one_run_plan(session, table: str):
    """The plan predict makes for ``table`` (imagenet, into itself), all due rows in one run."""
    from sightql.inference.pipeline import PredictOptions
    from sightql.inference.plan import PredictPlan
    from sightql.inference.source import Params, prepare_target, resolve_table

    source = resolve_table(session.con, table, "image")
    target = prepare_target(session.con, source, None, 0)
    return PredictPlan(session.warehouse, session.registry.spec("imagenet"), source, target, PredictOptions(), None,
                       Params(None), False, 100)


def test_rows_are_read_by_row_id_and_a_row_no_longer_at_its_id_by_key(photos, photos_dir, monkeypatch):
    from sightql.inference.plan import RowRun, read_run, table_runs
    from sightql.inference.source import TableSource

    by_key = []
    original = TableSource.rows_by_key_query
    monkeypatch.setattr(TableSource, "rows_by_key_query", lambda self, keys: by_key.append(list(keys)) or original(self, keys))
    photos.load_images("inline_photos", photos_dir, inline=True)  # bytes in the table: read by row id
    plan = one_run_plan(photos, "inline_photos")
    (run,) = list(table_runs(plan))
    assert run.rowids == sorted(run.rowids) and len(set(run.rowids)) == PHOTO_FILES
    images = photo_bytes(photos_dir)
    rows, gone = read_run(plan, run)
    assert gone == 0 and by_key == []
    assert dict(zip(rows.column("key").to_pylist(), rows.column("image").to_pylist())) == images

    # Ids that hold other rows now (as after compacted deletes), and a key changed since planning.
    photos.sql("UPDATE inline_photos SET relative_path = 'renamed.jpg' WHERE relative_path = 'coffee.jpg'")
    shifted = RowRun([*run.rowids[1:], run.rowids[-1] + 1], run.keys, None)
    rows, gone = read_run(plan, shifted)
    assert gone == 1 and sorted(by_key[0]) == sorted(run.keys)
    del images["coffee.jpg"]
    assert dict(zip(rows.column("key").to_pylist(), rows.column("image").to_pylist())) == images


def test_images_are_stored_without_zstd_and_older_zstd_tables_still_predict_and_convert(blob_photos, photos_dir):
    photos = blob_photos
    def methods(table: str) -> set[str]:
        photos.sql("CHECKPOINT")
        return {r["compression"] for r in photos.sql(
            "SELECT compression FROM pragma_storage_info(?) WHERE column_name = 'image'", [table]).to_pylist()}

    assert "ZSTD" not in methods("photos") and "Uncompressed" in methods("photos")
    photos.con.execute("RESET disabled_compression_methods")  # as a warehouse written before sightql set it
    photos.sql("CREATE TABLE legacy (relative_path VARCHAR PRIMARY KEY, image BLOB)")
    photos.sql("INSERT INTO legacy SELECT relative_path, image FROM photos")
    assert "ZSTD" in methods("legacy")
    photos.con.execute("SET disabled_compression_methods = 'zstd'")
    photos.predict("imagenet", "legacy", progress=False)
    assert_exact(photos, stored(photos, "legacy"), photo_bytes(photos_dir))
    photos.sql("ALTER TABLE legacy ALTER COLUMN image SET DATA TYPE BLOB")  # the conversion docs/batch.md gives
    assert "ZSTD" not in methods("legacy")


def test_a_table_whose_column_named_rowid_hides_the_row_id_is_read_by_key(photos, photos_dir):
    photos.sql("CREATE TABLE odd AS SELECT relative_path, image, 7 AS rowid FROM photos")
    photos.sql("ALTER TABLE odd ADD PRIMARY KEY (relative_path)")
    report = photos.predict("imagenet", "odd", progress=False)
    assert report.predicted == PHOTO_FILES
    assert_exact(photos, stored(photos, "odd"), photo_bytes(photos_dir))
    assert photos.predict("imagenet", "odd", progress=False).predicted == 0


# ---- filters ------------------------------------------------------------------------
def test_where_is_the_callers_sql_with_bound_values(photos):
    positional = photos.predict("imagenet", "photos", into="a", where="relative_path LIKE ?", params=["c%"], progress=False)
    assert sorted(stored(photos, "a")) == ["camera.png", "chelsea.jpg", "china.jpg", "coffee.jpg"]
    assert positional.predicted == 4
    named = photos.predict("imagenet", "photos", into="b", where="relative_path = $name", params={"name": "cat's.jpg"},
                           progress=False)
    assert named.predicted == 0  # a quote in a value is data, never SQL
    photos.predict("imagenet", "photos", into="b", where="format = $f", params={"f": "PNG"}, progress=False)
    assert sorted(stored(photos, "b")) == ["camera.png"]


# ---- errors -------------------------------------------------------------------------------
def test_bad_images_become_error_rows_and_the_job_goes_on(photos, photos_dir):
    session = photos
    session.sql("CREATE TABLE mixed (k VARCHAR PRIMARY KEY, image BLOB)")
    good = photo_bytes(photos_dir)
    rows = [("coffee", good["coffee.jpg"]), ("corrupt", b"\xff\xd8\xff\xe0garbage"), ("empty", b""), ("null", None),
            ("truncated", good["chelsea.jpg"][:2000]), ("chelsea", good["chelsea.jpg"])]
    for key, data in rows:
        session.sql("INSERT INTO mixed VALUES (?, ?)", [key, data])
    report = session.predict("imagenet", "mixed", batch_size=3, chunk_rows=3, progress=False)
    assert (report.predicted, report.errors) == (6, 4)
    out = stored(session, "mixed", "k")
    assert out["coffee"]["predicted_label"] == "espresso" and out["coffee"]["prediction_error"] is None
    assert out["chelsea"]["prediction_error"] is None
    for key in ("corrupt", "empty", "null", "truncated"):
        assert out[key]["predicted_label"] is None and out[key]["confidence"] is None
        assert out[key]["prediction_error"], key
    assert "NULL" in out["null"]["prediction_error"] and "empty" in out["empty"]["prediction_error"]
    assert session.predict("imagenet", "mixed", progress=False).predicted == 0  # error rows are current too


@pytest.mark.parametrize(
    "kwargs, error, sentence",
    [
        (dict(model="imagenet", source="nope"), TableError, "no table named 'nope'"),
        (dict(model="imagenet", source="photos", image="pixels"), TableError, "has no column 'pixels'"),
        (dict(model="imagenet", source="photos", image="format"), TableError, "not BLOB"),
        (dict(model="nope@prod", source="photos"), ModelNotFoundError, "no model named 'nope'"),
        (dict(model="minilm", source="photos"), ConfigError, "reads text"),
        (dict(model="imagenet", source="photos", runner="spark"), ConfigError, "runner 'spark' is not known"),
        (dict(model="imagenet", source="photos", top_k=-1), ConfigError, "top_k must be"),
        (dict(model="imagenet", source="photos", into="x;drop"), ConfigError, "not allowed"),
        (dict(model="imagenet", source="photos; DROP TABLE photos"), ConfigError, "not allowed"),
        (dict(model="imagenet", source="@nostage"), StageError, "no stage named 'nostage'"),
        (dict(model="imagenet", source="photos", where="no_such_column = 1"), ConfigError, "no_such_column"),
        (dict(model="imagenet", source="photos", where="size > ?"), ConfigError, "check where="),
    ],
)
def test_bad_arguments_are_one_clear_sentence(photos, kwargs, error, sentence):
    with pytest.raises(error, match=sentence.replace("(", r"\(").replace("?", r"\?")) as raised:
        photos.predict(**kwargs, progress=False)
    assert "\n" not in str(raised.value)


def test_tables_without_a_key_or_stages_without_into_are_refused(photos, photos_dir):
    photos.sql("CREATE TABLE loose (image BLOB)")
    with pytest.raises(TableError, match="no single-column primary key"):
        photos.predict("imagenet", "loose", progress=False)
    photos.create_stage("pics").put(photos_dir)
    with pytest.raises(ConfigError, match="needs into="):
        photos.predict("imagenet", "@pics", progress=False)
    photos.sql("CREATE TABLE other (id INTEGER PRIMARY KEY)")
    with pytest.raises(TableError, match="not keyed by 'relative_path'"):
        photos.predict("imagenet", "photos", into="other", progress=False)


# ---- stages ---------------------------------------------------------------------------
def test_a_stage_prefix_is_predicted_into_a_table(session, photos_dir):
    stage = session.create_stage("pics")
    stage.put(photos_dir, prefix="in")
    stage.put(photos_dir / "coffee.jpg", prefix="elsewhere")
    report = session.predict("imagenet", "@pics/in", into="pic_labels", batch_size=4, chunk_rows=4, progress=False)
    assert (report.predicted, report.errors) == (PHOTO_FILES + 1, 1)  # notes.txt is an error row
    rows = stored(session, "pic_labels")
    assert rows["in/notes.txt"]["prediction_error"].startswith("not an image")
    rows.pop("in/notes.txt")
    assert_exact(session, rows, {f"in/{k}": v for k, v in photo_bytes(photos_dir).items()})
    assert session.predict("imagenet", "@pics/in", into="pic_labels", progress=False).predicted == 0
    stage.write_bytes("in/coffee.jpg", (photos_dir / "chelsea.jpg").read_bytes())
    stage.write_bytes("in/new.jpg", (photos_dir / "coffee.jpg").read_bytes())
    third = session.predict("imagenet", "@pics/in", into="pic_labels", where="relative_path LIKE ?", params=["%.jpg"],
                            progress=False)
    assert (third.predicted, third.skipped) == (2, 6)
    assert stored(session, "pic_labels")["in/new.jpg"]["predicted_label"] == "espresso"


# ---- crash and resume -------------------------------------------------------------------
# The child waits at the given point of the given chunk's write (told by predict's on_write hook)
# and says so on stderr, so the test can kill -9 it exactly there.
_CHILD = """
import sys, time, sightql
from sightql.inference.predict import predict
point, _, chunk = sys.argv[3].partition(":")

def on_write(at, n):
    if (at, n) == (point, int(chunk)):
        print(f"sightql-test: paused {at} of chunk {n}", file=sys.stderr, flush=True)
        time.sleep(3600)

with sightql.connect(sys.argv[1]) as s:
    predict(s.warehouse, s.registry, s.stages, "imagenet", "photos", into=sys.argv[2] or None, batch_size=2, chunk_rows=2, progress=False,
            on_write=on_write)
"""


def _run_until_paused(warehouse: Path, into: str, pause: str) -> None:
    kill_when_paused(_CHILD, [str(warehouse), into, pause])


@pytest.mark.slow
@pytest.mark.parametrize("into", ["", "labels"], ids=["same-table", "separate-table"])
@pytest.mark.parametrize("pause, committed", [("after-commit:2", 4), ("before-commit:3", 4)])
def test_kill_9_mid_run_then_rerun_leaves_exactly_one_exact_prediction_per_row(warehouse, photos_dir, into, pause,
                                                                               committed):
    with sightql.connect(warehouse) as s:
        s.load_images("photos", photos_dir)
    _run_until_paused(warehouse, into, pause)
    table = into or "photos"
    with sightql.connect(warehouse) as s:
        done = s.sql(f"SELECT count(*) AS n FROM {table} WHERE model_version IS NOT NULL").to_pylist()[0]["n"]
        assert done == committed  # what was committed survived; the open transaction left no trace
        report = s.predict("imagenet", "photos", into=into or None, progress=False)
        assert (report.predicted, report.skipped) == (PHOTO_FILES - committed, committed)
        counts = s.sql(f"SELECT count(*) AS n, count(DISTINCT relative_path) AS keys, count(model_version) AS done "
                       f"FROM {table}").to_pylist()[0]
        assert counts == {"n": PHOTO_FILES, "keys": PHOTO_FILES, "done": PHOTO_FILES}
        assert_exact(s, stored(s, table), photo_bytes(photos_dir))


# ---- runners ------------------------------------------------------------------------------
def test_a_runner_carries_its_options_and_the_settings_name_the_default_cluster():
    from sightql.config import Settings
    from sightql.inference.runners import LocalRunner, resolve_runner, runner_from_options

    for call, sentence in [
        (lambda: runner_from_options("local", scheduler="tcp://x:1"), "needs runner='dask'"),
        (lambda: runner_from_options("local", workers=2), "workers= applies to runner='dask'"),
        (lambda: DaskRunner("tcp://x:1", 2), "workers= applies to the local cluster only"),
        (lambda: DaskRunner(workers=0), "workers must be at least 1, got 0"),
        (lambda: resolve_runner("dask", Settings(dask_scheduler="tcp://x:1", dask_workers=2)), "unset one of them"),
    ]:
        with pytest.raises(ConfigError, match=sentence):
            call()
    remote = Settings(dask_scheduler="tcp://x:1")
    assert resolve_runner("local", remote) == LocalRunner() == runner_from_options("local")
    assert resolve_runner("dask", remote) == DaskRunner("tcp://x:1") == resolve_runner(DaskRunner(), remote)
    assert resolve_runner("dask", Settings(dask_workers=3)) == DaskRunner(workers=3)
    assert resolve_runner(DaskRunner(workers=2), remote) == DaskRunner(workers=2)  # a runner's own options win
    assert runner_from_options("dask", workers=2) == DaskRunner(workers=2)


@pytest.mark.dask
@pytest.mark.slow
def test_the_dask_runner_equals_the_local_runner(photos, photos_dir):
    local = photos.predict("imagenet", "photos", into="by_local", top_k=2, progress=False)
    distributed = photos.predict("imagenet", "photos", into="by_dask", top_k=2, runner=DaskRunner(workers=2),
                                 chunk_rows=3, progress=False)
    assert (distributed.predicted, distributed.runner) == (local.predicted, "dask")
    a, b = stored(photos, "by_local"), stored(photos, "by_dask")
    assert set(a) == set(b)
    for key in a:
        assert a[key]["predicted_label"] == b[key]["predicted_label"]
        assert a[key]["confidence"] == pytest.approx(b[key]["confidence"], abs=1e-6)
        assert [t["label"] for t in a[key]["top_k"]] == [t["label"] for t in b[key]["top_k"]]
        assert a[key]["predicted_sha256"] == b[key]["predicted_sha256"]
    assert photos.predict("imagenet", "photos", into="by_dask", top_k=2, runner=DaskRunner(workers=2),
                          progress=False).predicted == 0


@pytest.mark.dask
@pytest.mark.slow
def test_dask_on_a_given_scheduler_reads_a_stage_and_loads_the_model_once_per_worker(session, photos_dir, tmp_path):
    from dask.distributed import Client, LocalCluster

    from sightql.inference.runners.dask_model import model_key, ship_model, shipped_models
    from sightql.registry.specs import loaded_model_count

    session.create_stage("pics").put(photos_dir)
    path = write_onnx(tiny_classifier(3, seed=1), tmp_path / "m.onnx")
    session.registry.log_model(path, "defects", labels=["crack", "dent", "ok"])
    src = str(ROOT / "src")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      env={"PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}) as cluster:
        report = session.predict("defects", "@pics", into="by_dask", runner=DaskRunner(scheduler=cluster.scheduler_address),
                                 chunk_rows=2, progress=False)
        with Client(cluster) as client:
            loads = client.run(loaded_model_count)
            shipped = client.run(shipped_models)
            assert not ship_model(client, session.registry.spec("defects"))  # the scheduler has it: not sent again
    assert (report.predicted, report.errors) == (PHOTO_FILES + 1, 1)
    # Workers at a scheduler address may be other machines: each got the model's files from the driver.
    key = model_key(session.registry.spec("defects"))
    assert len(shipped) == 2 and all(list(models) == [key] for models in shipped.values())
    # 5 ranges over 2 workers: each worker that ran one loaded the model once, never per range.
    assert 1 <= sum(loads.values()) <= 2 and all(n <= 1 for n in loads.values())
    session.predict("defects", "@pics", into="by_local", progress=False)
    a, b = stored(session, "by_local"), stored(session, "by_dask")
    assert {k: (r["predicted_label"], r["prediction_error"]) for k, r in a.items()} == \
        {k: (r["predicted_label"], r["prediction_error"]) for k, r in b.items()}


# A user's script as it is usually written first: no `if __name__ == "__main__":` guard. A worker
# started by multiprocessing would re-run it (and reopen the held warehouse) before doing any work.
UNGUARDED_SCRIPT = """
import sys
import sightql
from sightql.inference.runners import DaskRunner

s = sightql.connect(sys.argv[1])
s.load_images("photos", sys.argv[2])
report = s.predict("imagenet", "photos", into="labels", runner=DaskRunner(workers=2), progress=False)
print("predicted", report.predicted, "stored", s.sql("SELECT count(predicted_label) AS n FROM labels").to_pylist()[0]["n"])
"""
GUARDED_SCRIPT = "def main():\n" + "".join(f"    {line}\n" for line in UNGUARDED_SCRIPT.strip().splitlines()) + \
    'if __name__ == "__main__":\n    main()\n'


@pytest.mark.dask
@pytest.mark.slow
@pytest.mark.parametrize("script", [UNGUARDED_SCRIPT, GUARDED_SCRIPT], ids=["no-main-guard", "main-guard"])
def test_a_script_runs_the_dask_runner_with_or_without_a_main_guard(script, warehouse, photos_dir, tmp_path):
    path = tmp_path / "label_photos.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(path), str(warehouse), str(photos_dir)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"predicted {PHOTO_FILES} stored {PHOTO_FILES}"
    assert "Traceback" not in done.stderr and " - INFO - " not in done.stderr  # no Dask chatter either


@pytest.mark.dask
def test_a_local_worker_that_cannot_start_is_an_error_not_a_hang(monkeypatch):
    from sightql.errors import DistributedError
    from sightql.inference.runners.dask_cluster import local_cluster

    # Read by the worker processes only (this process read its Dask config at import).
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD", "no-such-method")
    with pytest.raises(DistributedError, match="Dask worker process 0 exited with code 1 before it joined"):
        local_cluster(1)


def test_onnx_runtime_threads_come_from_the_environment(monkeypatch):
    from sightql.config import onnx_threads

    monkeypatch.setenv("SIGHTQL_ORT_THREADS", "1")
    assert onnx_threads() == 1
    monkeypatch.setenv("SIGHTQL_ORT_THREADS", "all")
    with pytest.raises(ConfigError, match="SIGHTQL_ORT_THREADS='all' is not a whole number; set it to one"):
        onnx_threads()


@pytest.mark.dask
@pytest.mark.slow
def test_local_cluster_workers_share_the_cores_between_onnx_runtime_and_decoding(photos, monkeypatch):
    from dask.distributed import Client

    from sightql.inference.runners.dask_cluster import local_cluster

    def worker_threads(spec) -> tuple[int, int]:
        from sightql.config import decode_threads
        from sightql.registry.specs import load_model

        return load_model(spec)._session.get_session_options().intra_op_num_threads, decode_threads()

    monkeypatch.delenv("SIGHTQL_ORT_THREADS", raising=False)
    monkeypatch.delenv("SIGHTQL_DECODE_THREADS", raising=False)
    share = max(1, (os.cpu_count() or 1) // 2)
    with local_cluster(2) as cluster, Client(cluster) as client:
        answers = client.run(worker_threads, photos.registry.spec("imagenet"))
    assert list(answers.values()) == [(share, share)] * 2
    monkeypatch.setenv("SIGHTQL_ORT_THREADS", "3")  # set by hand, it reaches the workers unchanged
    with local_cluster(1) as cluster, Client(cluster) as client:
        answers = client.run(worker_threads, photos.registry.spec("imagenet"))
    assert list(answers.values()) == [(3, os.cpu_count() or 1)]


@pytest.mark.gpu
def test_cuda_predictions_match_the_cpu(photos):
    photos.predict("imagenet", "photos", into="on_cpu", device="cpu", progress=False)
    photos.predict("imagenet", "photos", into="on_gpu", device="cuda", progress=False)
    a, b = stored(photos, "on_cpu"), stored(photos, "on_gpu")
    for key in a:
        assert a[key]["predicted_label"] == b[key]["predicted_label"]
        assert a[key]["confidence"] == pytest.approx(b[key]["confidence"], abs=1e-3)


# ---- CLI and imports --------------------------------------------------------------------------
def test_cli_predict_and_its_mistakes(photos, warehouse):
    photos.close()
    cli = [sys.executable, "-m", "sightql", "predict", "-w", str(warehouse), "--no-progress"]
    done = subprocess.run([*cli, "-m", "imagenet", "-t", "photos", "--into", "labels", "-k", "2"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"predicted {PHOTO_FILES} row(s) of photos into labels" in done.stdout
    again = subprocess.run([*cli, "-m", "imagenet", "-t", "photos", "--into", "labels", "-k", "2"],
                           capture_output=True, text=True)
    assert f"predicted 0 row(s)" in again.stdout and f"{PHOTO_FILES} skipped" in again.stdout
    for args, sentence in [(["-m", "imagenet"], "give exactly one source"),
                           (["-m", "imagenet", "--from", "photos"], "--from takes a stage reference"),
                           (["-m", "imagenet", "-t", "photos", "--runner", "ray"], "'ray' is not one of 'local', 'dask'"),
                           (["-m", "imagenet", "-t", "photos", "--scheduler", "tcp://x:1"], "needs runner='dask'"),
                           (["-m", "imagenet", "-t", "photos", "--workers", "2"], "workers= applies to runner='dask'")]:
        bad = subprocess.run([*cli, *args], capture_output=True, text=True)
        assert bad.returncode == 2 and sentence in bad.stderr and "Traceback" not in bad.stderr


def test_sql_stage_reads_and_predict_from_a_stage_all_run_in_the_engines_one_worker_pool(session, photos_dir):
    import threading

    session.create_stage("pics").put(photos_dir)
    found = session.sql("SELECT classify('imagenet', stage_file('@pics', 'coffee.jpg')).label AS label").to_pylist()
    assert found == [{"label": "espresso"}]
    session.predict("imagenet", "@pics", into="pic_labels", chunk_rows=4, progress=False)
    pools = {t.name.rsplit("_", 1)[0] for t in threading.enumerate() if t.name.startswith("sightql-")}
    assert pools <= {"sightql-worker", "sightql-predict-reader"}  # one pool: no separate decode or stage-read pool
