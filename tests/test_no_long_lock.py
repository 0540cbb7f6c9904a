"""No long lock: while `sightql predict` or `sightql train` runs, other processes use the warehouse.

Each job holds the DuckDB file only for short steps (planning, a chunk's read of keys or rows, a
chunk's write, an epoch's log rows), so the API answers, `sightql sql` reads, the app's pages load
and a second job takes its turn between the first one's chunks. Every test checks that its reads
really happened while the job ran (the job's rows grew between them), else it would prove nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

import sightql
from sightql.models.loader import builtin_version
from tests.api_server import running_server
from tests.app_pages import page

CLI = [sys.executable, "-m", "sightql"]
TOKEN = "no-long-lock-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def small_jpegs(count: int, size: tuple[int, int] = (64, 48), seed: int = 0) -> list[bytes]:
    """``count`` distinct small JPEGs of noise, fast to make (3,000 in about a second)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def image_table(home: Path, count: int, table: str = "imgs", labels: list[str] | None = None) -> None:
    """A table as load_images makes it (relative_path key, image BLOB, sha256), plus ``label`` when given."""
    images = small_jpegs(count)
    columns = {
        "relative_path": [f"img-{i:05d}.jpg" for i in range(count)],
        "image": pa.array(images, pa.binary()),
        "sha256": [hashlib.sha256(data).hexdigest() for data in images],
    }
    if labels:
        columns["label"] = [labels[i % len(labels)] for i in range(count)]
    rows = pa.table(columns)
    with sightql.connect(home) as session:
        label = ", label VARCHAR" if labels else ""
        session.sql(f"CREATE TABLE {table} (relative_path VARCHAR PRIMARY KEY, image BLOB, sha256 VARCHAR{label})")
        session.warehouse.connection().register("new_rows", rows)
        session.sql(f"INSERT INTO {table} SELECT * FROM new_rows")


def start_predict(home: Path, *args: str) -> subprocess.Popen:
    """`sightql predict` with the bundled model on table imgs, as a process of its own (default lock wait)."""
    env = {k: v for k, v in os.environ.items() if k != "SIGHTQL_LOCK_WAIT"}
    return subprocess.Popen([*CLI, "predict", "-m", "imagenet", "-t", "imgs", "--no-progress", "-w", str(home), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sql_read(home: Path, query: str, *, missing_ok: bool = False) -> list[dict]:
    """`sightql sql QUERY -f json` at the default lock wait (5 s); its rows, or an assertion saying why not
    (``missing_ok``: no rows when the job has not made its table or columns yet)."""
    env = {k: v for k, v in os.environ.items() if k != "SIGHTQL_LOCK_WAIT"}
    result = subprocess.run([*CLI, "sql", query, "-f", "json", "-w", str(home)], env=env, capture_output=True,
                            text=True, timeout=120)
    missing = ("Catalog Error" in result.stderr and "not" in result.stderr) or (  # no table yet
        "Binder Error" in result.stderr and "not found" in result.stderr)  # no prediction columns yet
    if missing_ok and result.returncode == 2 and missing:
        return []
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def count_of(home: Path, table: str) -> int:
    """Rows of ``table`` predicted so far (0 while predict has not yet made the table or its columns)."""
    found = sql_read(home, f"SELECT count(*) AS n FROM {table} WHERE predicted_label IS NOT NULL", missing_ok=True)
    return found[0]["n"] if found else 0


def wait_for(condition, what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.2)


def finish(job: subprocess.Popen) -> str:
    out, err = job.communicate(timeout=900)
    assert job.returncode == 0, err
    assert "Traceback" not in err
    return out


def assert_one_prediction_per_row(home: Path, into: str, rows: int) -> None:
    """Every source row has exactly one prediction by the bundled model, from its own bytes."""
    key_check = "" if into == "imgs" else ", count(DISTINCT p.relative_path) AS keys"
    with sightql.connect(home) as session:
        found = session.sql(
            f"SELECT count(*) AS n{key_check}, count(*) FILTER (p.predicted_label IS NULL) AS unlabelled, "
            "count(*) FILTER (p.model_version IS DISTINCT FROM ?) AS other_model, "
            "count(*) FILTER (p.predicted_sha256 IS DISTINCT FROM i.sha256) AS other_bytes "
            f"FROM imgs i JOIN {into} p USING (relative_path)",
            [builtin_version("imagenet")],
        ).to_pylist()[0]
        stored = session.sql(f"SELECT count(*) AS n FROM {into}").to_pylist()[0]["n"]
    expected = {"n": rows, "unlabelled": 0, "other_model": 0, "other_bytes": 0} | ({} if into == "imgs" else {"keys": rows})
    assert found == expected and stored == rows, (found, stored)


def grew_while_running(seen: list[tuple[int, bool]], total: int) -> bool:
    """Whether two reads taken while the job was running saw different numbers of its rows, short of all."""
    during = {n for n, running in seen if running and 0 < n < total}
    return len(during) >= 2


# ---- the acceptance test -------------------------------------------------------------
ROWS = 3000
REQUESTS = 20


@pytest.mark.slow
def test_the_api_and_sql_reads_answer_while_predict_runs_on_3000_images(warehouse, photos_dir):
    image_table(warehouse, ROWS)
    coffee = (photos_dir / "coffee.jpg").read_bytes()
    with running_server(warehouse, {"SIGHTQL_API_TOKEN": TOKEN, "SIGHTQL_LOCK_WAIT": "5"}) as server:
        url = f"{server.base}/v1/models/imagenet/predict?k=1"

        def ask() -> httpx.Response:
            return httpx.post(url, headers=AUTH, files={"file": ("coffee.jpg", coffee)}, timeout=60)

        assert ask().status_code == 200  # the model is loaded before the job starts
        job = start_predict(warehouse, "--into", "preds")
        wait_for(lambda: job.poll() is not None or count_of(warehouse, "preds") > 0, "the job's first chunk")
        answers: list[tuple[int, str, bool]] = []  # status, body, whether the job was still running after it

        def send_requests() -> None:
            for _ in range(REQUESTS):
                response = ask()
                answers.append((response.status_code, response.text, job.poll() is None))
                time.sleep(0.2)

        sender = threading.Thread(target=send_requests)
        sender.start()
        reads: list[tuple[int, bool]] = []  # rows predicted so far, whether the job was still running after the read
        while sender.is_alive() or len(reads) < 3:
            reads.append((count_of(warehouse, "preds"), job.poll() is None))
        sender.join()
        seen_count = sql_read(warehouse, "SELECT count(*) AS n FROM imgs")  # a plain read too
        still_running = job.poll() is None
        out = finish(job)
    assert "Traceback" not in server.stderr

    assert [status for status, _, _ in answers] == [200] * REQUESTS, [a[1] for a in answers if a[0] != 200]
    assert all(json.loads(body)["predictions"][0]["top"][0]["label"] == "espresso" for _, body, _ in answers)
    assert seen_count == [{"n": ROWS}]
    # The checks overlapped the job: every request was answered while it ran, and its rows grew between reads.
    assert all(running for _, _, running in answers) and still_running, "the job ended before the checks; use more rows"
    assert grew_while_running(reads, ROWS), reads
    assert f"predicted {ROWS} row(s) of imgs into preds" in out
    assert_one_prediction_per_row(warehouse, "preds", ROWS)


# ---- training ----------------------------------------------------------------------
@pytest.mark.slow
def test_training_log_is_readable_with_sightql_sql_while_sightql_train_runs(warehouse):
    epochs = 4
    image_table(warehouse, 24, table="shapes", labels=["left", "right"])
    env = {k: v for k, v in os.environ.items() if k != "SIGHTQL_LOCK_WAIT"}
    job = subprocess.Popen([*CLI, "train", "--from", "shapes", "--label", "label", "--register", "shapes",
                            "--epochs", str(epochs), "--image-size", "64", "--batch-size", "4", "--no-amp",
                                "--patience", "0",  # every epoch runs: the test counts their log rows
                            "-w", str(warehouse)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reads: list[tuple[int, bool]] = []
    logged = "SELECT count(*) AS n FROM training_log l JOIN training_runs r USING (run_id) WHERE r.status = 'running'"
    while job.poll() is None:
        reads.append((sql_read(warehouse, logged)[0]["n"], job.poll() is None))
        time.sleep(0.5)  # leave the cores to the training between reads
    out = finish(job)
    assert "registered shapes@v1" in out
    assert grew_while_running(reads, epochs + 1), reads  # epochs' rows read while the run was still running
    with sightql.connect(warehouse) as session:
        assert session.sql("SELECT count(*) AS n FROM training_log").to_pylist() == [{"n": epochs + 1}]  # and the probe


# ---- a second job ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("second_into", ["preds_b", "preds_a"], ids=["another-table", "the-same-table"])
def test_a_second_predict_job_takes_turns_with_the_first_and_both_finish(warehouse, second_into):
    """Before: the second job's open failed after its 5 s wait. Now it opens between the first's chunks."""
    rows = 800
    image_table(warehouse, rows)
    first = start_predict(warehouse, "--into", "preds_a")
    wait_for(lambda: first.poll() is not None or count_of(warehouse, "preds_a") > 0, "the first job's first chunk")
    second = start_predict(warehouse, "--into", second_into)
    if second_into == "preds_b":  # it wrote while the first still ran
        wait_for(lambda: second.poll() is not None or count_of(warehouse, "preds_b") > 0, "the second job's first chunk")
        overlapped = first.poll() is None
    else:  # both write one table: the second's plan, made while the first ran, still had rows to do
        overlapped = first.poll() is None and count_of(warehouse, "preds_a") < rows
    out_first, out_second = finish(first), finish(second)
    assert overlapped, "the first job ended before the second took its turn; use more rows"
    assert f"predicted {rows} row(s) of imgs into preds_a" in out_first
    if second_into == "preds_b":
        assert f"predicted {rows} row(s) of imgs into preds_b" in out_second
    else:
        assert not out_second.startswith("predicted 0 row(s)"), out_second
    for into in {"preds_a", second_into}:
        assert_one_prediction_per_row(warehouse, into, rows)


# ---- the app -------------------------------------------------------------------------
@pytest.mark.slow
def test_the_sql_page_of_the_app_loads_and_queries_while_predict_runs(warehouse, monkeypatch):
    rows = 1000
    image_table(warehouse, rows)
    job = start_predict(warehouse, "--into", "preds")
    wait_for(lambda: job.poll() is not None or count_of(warehouse, "preds") > 0, "the job's first chunk")
    shown: list[tuple[int, bool]] = []
    while len(shown) < 3 or not grew_while_running(shown, rows):
        if job.poll() is not None:
            break
        at = page("sql_console", warehouse, monkeypatch).run()
        at.text_area[0].input("SELECT count(*) AS n FROM preds WHERE predicted_label IS NOT NULL")
        at.button[0].click()
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        [frame] = at.dataframe
        shown.append((int(frame.value["n"].iloc[0]), job.poll() is None))
        time.sleep(0.5)
    finish(job)
    assert grew_while_running(shown, rows), shown
    assert_one_prediction_per_row(warehouse, "preds", rows)


# ---- kill -9 -------------------------------------------------------------------------
@pytest.mark.slow
def test_predict_killed_with_sigkill_at_random_points_then_rerun_loses_and_duplicates_nothing(warehouse):
    rows = 1200
    image_table(warehouse, rows)
    seed = int.from_bytes(os.urandom(4), "little")
    chance = random.Random(seed)
    killed_at: list[int] = []
    done = 0
    for _ in range(3):
        # A random point by progress, not by time (a quiet machine would finish before a timed kill):
        # once at least a random number of further rows is committed, SIGKILL at once.
        target = done + chance.randint(1, max(1, (rows - done) // 2))
        job = start_predict(warehouse)  # into the source table itself (UPDATE per chunk)
        while job.poll() is None and count_of(warehouse, "imgs") < target:
            time.sleep(chance.uniform(0.0, 0.5))
        if job.poll() is None:
            job.send_signal(signal.SIGKILL)
        job.wait(timeout=60)
        done = count_of(warehouse, "imgs")
        killed_at.append(done)
    assert any(0 < n < rows for n in killed_at), (seed, killed_at)  # at least one kill landed mid-job
    assert killed_at == sorted(killed_at), (seed, killed_at)  # a kill never undid committed chunks
    out = finish(start_predict(warehouse))
    done_before = killed_at[-1]
    assert f"predicted {rows - done_before} row(s) of imgs" in out, (seed, killed_at, out)
    assert f"{done_before} skipped as already current" in out, (seed, killed_at, out)
    assert_one_prediction_per_row(warehouse, "imgs", rows)


# ---- fast: the warehouse is free between a job's steps ------------------------------------
OTHER_PROCESS = (
    "import sys, sightql\n"
    "with sightql.connect(sys.argv[1], lock_wait=5) as s:\n"
    "    s.sql('INSERT INTO visits VALUES (1)')\n"
    "    print(s.sql(sys.argv[2]).column(0)[0])\n"
)


def other_process(home: Path, query: str) -> str:
    """Another process opens the warehouse (5 s wait), writes a row to ``visits`` and prints ``query``'s first value."""
    result = subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(home), query], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class ProbingRunner:
    """The local runner, with another process opening the warehouse after each chunk is predicted."""

    name = "probing"

    def __init__(self, home: Path, into: str):
        self.home, self.into, self.seen = home, into, []

    def run(self, plan):
        from sightql.inference.runners import LocalRunner

        for results in LocalRunner().run(plan):
            self.seen.append(int(other_process(self.home, f"SELECT count(*) FROM {self.into} WHERE predicted_label IS NOT NULL")))
            yield results


def test_another_process_writes_and_reads_between_a_predict_runs_chunks(warehouse):
    image_table(warehouse, 24)
    with sightql.connect(warehouse) as session:
        session.sql("CREATE TABLE visits (n INTEGER)")
        runner = ProbingRunner(warehouse, "preds")
        report = session.predict("imagenet", "imgs", into="preds", chunk_rows=8, runner=runner, progress=False)
        assert report.predicted == 24
        assert runner.seen == [0, 8, 16]  # each read saw the chunks written before it
        assert session.sql("SELECT count(*) AS n FROM visits").to_pylist() == [{"n": 3}]
        assert session.sql("SELECT image_info(NULL::BLOB).error AS e").column("e")[0].as_py()  # functions back after
    assert_one_prediction_per_row(warehouse, "preds", 24)


def test_another_process_reads_training_log_after_each_epoch_while_the_run_goes_on(warehouse, monkeypatch):
    from sightql.train.runs import RunStore

    image_table(warehouse, 16, table="shapes", labels=["left", "right"])
    logged = RunStore.log_epoch
    seen: list[str] = []

    def log_then_look(self, run_id, row):
        logged(self, run_id, row)
        seen.append(other_process(warehouse, "SELECT string_agg(r.status || ':' || l.epoch, ',' ORDER BY l.epoch) "
                                             "FROM training_log l JOIN training_runs r USING (run_id)"))

    monkeypatch.setattr(RunStore, "log_epoch", log_then_look)
    with sightql.connect(warehouse) as session:
        session.sql("CREATE TABLE visits (n INTEGER)")
        result = session.train("shapes", "shapes", label="label", epochs=2, image_size=64, batch_size=4,
                               progress=False, seed=0)
        assert result.status == "completed"
        assert session.sql("SELECT count(*) AS n FROM visits").to_pylist() == [{"n": 3}]  # one per epoch, epoch 0 included
    assert seen == ["running:0", "running:0,running:1", "running:0,running:1,running:2"]  # epoch 0: the probe
