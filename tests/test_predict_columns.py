"""Write-back into the user's own table: a column of stage paths, the user's column names, no primary key.

The clothing tutorial's flow: a stage of 10 class folders of JPEGs, a table
``clothing_test(file_name, TYPE, CONFIDENCE, PRED_TIMESTAMP)`` whose file_name holds paths relative to
the stage, and one ``predict`` (Python or CLI) that fills the three columns, incrementally and
crash-safely, with a real (small, registered) model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import sightql
from sightql.errors import ConfigError, StageError, TableError
from sightql.inference.runners import DaskRunner
from sightql.stages.files import to_file
from sightql.stages.stage import Stage
from tests.cli_tree import run_main
from tests.kill_runs import kill_when_paused
from tests.registry_models import tiny_classifier, write_onnx
from tests.test_batch_predict import single_row_answer

CLASSES = ("shirt", "trouser", "dress", "coat", "sandal", "sneaker", "bag", "boot", "pullover", "tshirt")
PER_CLASS = 3
ROWS = len(CLASSES) * PER_CLASS
COLUMNS = {"label": "TYPE", "score": "CONFIDENCE", "predicted_at": "PRED_TIMESTAMP"}
CLI_COLUMNS = "label=TYPE,score=CONFIDENCE,predicted_at=PRED_TIMESTAMP"
TUTORIAL = dict(image="file_name", stage="@clothing", columns=COLUMNS, progress=False)


def clothing_jpeg(index: int, seed: int) -> Image.Image:
    """A 96x96 photo-like JPEG source: a coloured shape on a textured ground, different for each index."""
    rng = np.random.default_rng(seed * 1000 + index)
    ground = rng.normal(128, 40, (96, 96, 3)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(ground)
    draw = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in rng.integers(0, 255, 3))
    box = [int(v) for v in (*rng.integers(5, 35, 2), *rng.integers(60, 91, 2))]
    (draw.ellipse if index % 2 else draw.rectangle)(box, fill=colour)
    return image


@pytest.fixture(scope="module")
def clothing_dir(tmp_path_factory) -> Path:
    """10 class folders of 3 real JPEGs each (``shirt/img_00.jpg`` ...)."""
    folder = tmp_path_factory.mktemp("clothing")
    for c, name in enumerate(CLASSES):
        (folder / name).mkdir()
        for i in range(PER_CLASS):
            clothing_jpeg(c * PER_CLASS + i, seed=1).save(folder / name / f"img_{i:02d}.jpg", quality=90)
    return folder


@pytest.fixture(scope="module")
def clf_onnx(tmp_path_factory) -> Path:
    """A small real CNN over the 10 classes, exported to ONNX once for the module."""
    return write_onnx(tiny_classifier(len(CLASSES), seed=3), tmp_path_factory.mktemp("clf") / "clf.onnx")


def paths(clothing_dir: Path) -> list[str]:
    return sorted(p.relative_to(clothing_dir).as_posix() for p in clothing_dir.rglob("*.jpg"))


def make_tutorial(session, clothing_dir: Path, clf_onnx: Path) -> None:
    """The tutorial's stage, its table of paths (no primary key), and clf@prod."""
    session.create_stage("clothing").put(clothing_dir)
    session.sql("CREATE TABLE clothing_test (file_name VARCHAR, TYPE VARCHAR, CONFIDENCE DOUBLE, PRED_TIMESTAMP TIMESTAMP)")
    for path in paths(clothing_dir):
        session.sql("INSERT INTO clothing_test (file_name) VALUES (?)", [path])
    session.registry.log_model(clf_onnx, "clf", labels=list(CLASSES))
    session.registry.get_model("clf").set_alias("prod", "v1")


@pytest.fixture
def tutorial(session, clothing_dir, clf_onnx):
    make_tutorial(session, clothing_dir, clf_onnx)
    return session


def rows_of(session, table: str = "clothing_test") -> dict[str, dict]:
    return {r["file_name"]: r for r in session.sql(f"SELECT * FROM {table} ORDER BY file_name").to_pylist()}


def assert_each_row_is_the_model_on_its_file(session, rows: dict, clothing_dir: Path) -> None:
    assert set(rows) == set(paths(clothing_dir))
    for path, row in rows.items():
        label, score = single_row_answer(session, "clf@prod", (clothing_dir / path).read_bytes())
        assert row["prediction_error"] is None, path
        assert (row["TYPE"], row["CONFIDENCE"]) == (label, pytest.approx(score, abs=1e-5)), path


class Reads:
    """Counts the stage files stat-ed and read in this process."""

    def __init__(self, monkeypatch):
        self.stats, self.reads = 0, 0
        stat, read_checked, read_bytes = Stage.stat, Stage.read_checked, Stage.read_bytes

        def counted_stat(stage, *args, **kwargs):
            self.stats += 1
            return stat(stage, *args, **kwargs)

        def counted(method):
            def read(stage, *args, **kwargs):
                self.reads += 1
                return method(stage, *args, **kwargs)
            return read

        monkeypatch.setattr(Stage, "stat", counted_stat)
        monkeypatch.setattr(Stage, "read_checked", counted(read_checked))
        monkeypatch.setattr(Stage, "read_bytes", counted(read_bytes))


# ---- the tutorial's flow ------------------------------------------------------------------
def test_predict_fills_the_tutorials_three_columns_then_skips_unchanged_files_unread_and_redoes_a_changed_one(
        tutorial, clothing_dir, monkeypatch):
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    first = tutorial.predict("clf@prod", "clothing_test", **TUTORIAL)
    assert (first.predicted, first.errors, first.skipped, first.model_version) == (ROWS, 0, 0, "clf@v1")
    rows = rows_of(tutorial)
    assert_each_row_is_the_model_on_its_file(tutorial, rows, clothing_dir)
    stamps = {r["PRED_TIMESTAMP"] for r in rows.values()}
    assert all(started - timedelta(seconds=1) <= s <= datetime.now(timezone.utc).replace(tzinfo=None) for s in stamps)
    # The user's three columns, plus the three that tell the next run what is current; no other output column.
    with tutorial.warehouse.cursor() as cursor:
        names = [r[0] for r in cursor.execute("DESCRIBE clothing_test").fetchall()]
    assert names == ["file_name", "TYPE", "CONFIDENCE", "PRED_TIMESTAMP", "model_version", "prediction_error",
                     "predicted_sha256"]

    reads = Reads(monkeypatch)
    again = tutorial.predict("clf@prod", "clothing_test", **TUTORIAL)
    assert (again.predicted, again.skipped) == (0, ROWS)
    assert (reads.reads, reads.stats) == (0, ROWS)  # a stat per file, not one byte read
    assert rows_of(tutorial) == rows

    changed, donor = "coat/img_01.jpg", "bag/img_00.jpg"
    new_bytes = (clothing_dir / donor).read_bytes()
    assert len(new_bytes) != (clothing_dir / changed).stat().st_size
    tutorial.stages.get("clothing").write_bytes(changed, new_bytes)
    redone = tutorial.predict("clf@prod", "clothing_test", **TUTORIAL)
    assert (redone.predicted, redone.errors, redone.skipped) == (1, 0, ROWS - 1)
    assert reads.reads == 1
    after = rows_of(tutorial)
    label, score = single_row_answer(tutorial, "clf@prod", new_bytes)
    assert (after[changed]["TYPE"], after[changed]["CONFIDENCE"]) == (label, pytest.approx(score, abs=1e-5))
    assert after[changed]["PRED_TIMESTAMP"] > rows[changed]["PRED_TIMESTAMP"]
    assert {k: v for k, v in after.items() if k != changed} == {k: v for k, v in rows.items() if k != changed}


def test_the_cli_runs_the_tutorials_command(tutorial, warehouse, clothing_dir):
    tutorial.close()
    command = [sys.executable, "-m", "sightql", "predict", "clf@prod", "--table", "clothing_test", "--image", "file_name",
               "--stage", "@clothing", "--columns", CLI_COLUMNS, "-w", str(warehouse), "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"predicted {ROWS} row(s) of clothing_test into clothing_test with clf@v1 (0 error row(s)" in done.stdout
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0 and "predicted 0 row(s)" in again.stdout and f"{ROWS} skipped" in again.stdout
    with sightql.connect(warehouse) as s:
        rows = rows_of(s)
        assert_each_row_is_the_model_on_its_file(s, rows, clothing_dir)
        assert all(r["PRED_TIMESTAMP"] is not None for r in rows.values())


# ---- crash and resume ---------------------------------------------------------------------
# The child pauses at the given point of the given chunk's write (predict's on_write hook) and says so,
# so the test can kill -9 it exactly there: half way through the 30 rows, in chunks of 4.
_CHILD = """
import sys, time, sightql
from sightql.inference.predict import predict
point, _, chunk = sys.argv[2].partition(":")

def on_write(at, n):
    if (at, n) == (point, int(chunk)):
        print("sightql-test: paused", file=sys.stderr, flush=True)
        time.sleep(3600)

with sightql.connect(sys.argv[1]) as s:
    predict(s.warehouse, s.registry, s.stages, "clf@prod", "clothing_test", image="file_name", stage="@clothing",
            columns={"label": "TYPE", "score": "CONFIDENCE", "predicted_at": "PRED_TIMESTAMP"},
            chunk_rows=4, batch_size=4, progress=False, on_write=on_write)
"""


@pytest.mark.slow
@pytest.mark.parametrize("pause, committed", [("after-commit:4", 16), ("before-commit:4", 12)])
def test_kill_9_half_way_then_rerun_loses_nothing_and_duplicates_nothing(tutorial, warehouse, clothing_dir, pause,
                                                                          committed):
    tutorial.close()
    kill_when_paused(_CHILD, [str(warehouse), pause])
    with sightql.connect(warehouse) as s:
        assert len([r for r in rows_of(s).values() if r["TYPE"] is not None]) == committed
        report = s.predict("clf@prod", "clothing_test", **TUTORIAL)
        assert (report.predicted, report.skipped) == (ROWS - committed, committed)
        counts = s.sql("SELECT count(*) AS n, count(DISTINCT file_name) AS paths, count(TYPE) AS typed, "
                       "count(PRED_TIMESTAMP) AS stamped FROM clothing_test").to_pylist()[0]
        assert counts == {"n": ROWS, "paths": ROWS, "typed": ROWS, "stamped": ROWS}
        assert_each_row_is_the_model_on_its_file(s, rows_of(s), clothing_dir)


# ---- paths: errors, references, keys, column types -----------------------------------------------
def test_a_missing_file_or_a_path_leaving_the_stage_is_that_rows_error_and_the_rest_go_on(tutorial, clothing_dir,
                                                                                          tmp_path):
    outside = tmp_path / "secret.jpg"
    clothing_jpeg(99, seed=2).save(outside)
    os.symlink(outside, Path(tutorial.stages.get("clothing").root) / "shirt" / "link.jpg")
    bad = ["../secret.jpg", "/etc/hostname", "shirt/link.jpg", "shirt/gone.jpg", "shirt"]
    for path in bad:
        tutorial.sql("INSERT INTO clothing_test (file_name) VALUES (?)", [path])
    tutorial.sql("INSERT INTO clothing_test (file_name) VALUES (NULL)")
    with pytest.raises(TableError, match="is NULL in 1 row"):  # a NULL path cannot key its row
        tutorial.predict("clf@prod", "clothing_test", **TUTORIAL)
    tutorial.sql("DELETE FROM clothing_test WHERE file_name IS NULL")

    report = tutorial.predict("clf@prod", "clothing_test", **TUTORIAL)
    assert (report.predicted, report.errors) == (ROWS + len(bad), len(bad))
    rows = rows_of(tutorial)
    errors = {path: rows[path]["prediction_error"] for path in bad}
    assert "goes outside the stage" in errors["../secret.jpg"]
    assert "is absolute" in errors["/etc/hostname"]
    assert "leads outside the stage" in errors["shirt/link.jpg"]
    assert "@clothing/shirt/gone.jpg does not exist" in errors["shirt/gone.jpg"]
    assert "is a folder" in errors["shirt"]
    assert all(rows[p]["TYPE"] is None and rows[p]["predicted_sha256"] is None for p in bad)
    assert_each_row_is_the_model_on_its_file(tutorial, {p: r for p, r in rows.items() if p not in bad}, clothing_dir)

    # Error rows are tried again; a file that appears is predicted then.
    tutorial.stages.get("clothing").write_bytes("shirt/gone.jpg", (clothing_dir / "shirt/img_00.jpg").read_bytes())
    again = tutorial.predict("clf@prod", "clothing_test", **TUTORIAL)
    assert (again.predicted, again.errors, again.skipped) == (len(bad), len(bad) - 1, ROWS)
    assert rows_of(tutorial)["shirt/gone.jpg"]["TYPE"] == rows["shirt/img_00.jpg"]["TYPE"]


def test_full_stage_references_a_key_column_compatible_types_and_new_columns(session, clothing_dir, clf_onnx):
    make_tutorial(session, clothing_dir, clf_onnx)
    session.sql("CREATE TABLE shots (shot_id INTEGER, ref VARCHAR, SCORE DECIMAL(5, 4), SEEN_AT TIMESTAMPTZ)")
    chosen = paths(clothing_dir)[:4]
    for n, path in enumerate(chosen):
        session.sql("INSERT INTO shots (shot_id, ref) VALUES (?, ?)", [n, f"@clothing/{path}"])
    session.sql("INSERT INTO shots (shot_id, ref) VALUES (?, ?)", [9, f"@clothing/{chosen[0]}"])  # the same file twice
    mapping = {"label": "KIND", "score": "SCORE", "predicted_at": "SEEN_AT", "error": "WHY", "model_version": "MODEL"}
    with pytest.raises(TableError, match=r"'ref' of 'shots' \(its path column\) holds .* 2 times.*pass key="):
        session.predict("clf@prod", "shots", image="ref", columns=mapping, progress=False)
    report = session.predict("clf@prod", "shots", image="ref", key="shot_id", columns=mapping, progress=False)
    assert (report.predicted, report.errors) == (5, 0)
    with session.warehouse.cursor() as cursor:
        kinds = dict(cursor.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'shots'").fetchall())
    assert kinds == {"shot_id": "INTEGER", "ref": "VARCHAR", "SCORE": "DECIMAL(5,4)", "SEEN_AT": "TIMESTAMP WITH TIME ZONE",
                     "KIND": "VARCHAR", "MODEL": "VARCHAR", "WHY": "VARCHAR", "predicted_sha256": "VARCHAR"}
    rows = {r["shot_id"]: r for r in session.sql("SELECT * FROM shots").to_pylist()}
    for n, path in [*enumerate(chosen), (9, chosen[0])]:
        label, score = single_row_answer(session, "clf@prod", (clothing_dir / path).read_bytes())
        assert (rows[n]["KIND"], float(rows[n]["SCORE"])) == (label, pytest.approx(score, abs=1e-4))
        assert rows[n]["MODEL"] == "clf@v1" and rows[n]["WHY"] is None and rows[n]["SEEN_AT"] is not None
    # Fewer outputs mapped: the same bookkeeping says every row is current. A newly mapped column makes rows due.
    fewer = {"label": "KIND", "error": "WHY", "model_version": "MODEL"}
    assert session.predict("clf@prod", "shots", image="ref", key="shot_id", columns=fewer, progress=False).predicted == 0
    more = session.predict("clf@prod", "shots", image="ref", key="shot_id", columns={**fewer, "confidence": "SCORE2"},
                           progress=False)
    assert more.predicted == 5
    filled = {r["shot_id"]: r["SCORE2"] for r in session.sql("SELECT shot_id, SCORE2 FROM shots").to_pylist()}
    assert filled == {n: pytest.approx(float(rows[n]["SCORE"]), abs=1e-4) for n in rows}

    # A stage source writes into its into= table's columns of your naming the same way.
    assert chosen[:3] == ["bag/img_00.jpg", "bag/img_01.jpg", "bag/img_02.jpg"]
    bags = session.predict("clf@prod", "@clothing/bag", into="bags", columns={"label": "KIND"}, progress=False)
    assert bags.predicted == PER_CLASS
    kinds = {r["relative_path"]: r["KIND"] for r in session.sql("SELECT * FROM bags").to_pylist()}
    assert kinds == {path: rows[n]["KIND"] for n, path in enumerate(chosen[:3])}
    assert session.predict("clf@prod", "@clothing/bag", into="bags", columns="label=KIND", progress=False).predicted == 0

    # FLOAT holds a score too (cast on write); a FILE-value table writes into its own columns the same way.
    session.sql("CREATE TABLE files (id INTEGER PRIMARY KEY, image file, S FLOAT)")
    session.sql("INSERT INTO files (id, image) VALUES (1, ?)", [to_file(session.stages, "@clothing", chosen[1]).as_row()])
    assert session.predict("clf@prod", "files", columns={"label": "KIND", "score": "S"}, progress=False).predicted == 1
    row = session.sql("SELECT * FROM files").to_pylist()[0]
    assert (row["KIND"], row["S"]) == (rows[1]["KIND"], pytest.approx(float(rows[1]["SCORE"]), abs=1e-4))


# ---- mistakes -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, sentence",
    [
        (dict(columns={"lable": "TYPE"}), ConfigError, "no output is called 'lable'; the outputs are label, score, top_k, model_version, predicted_at, error, sha256"),
        (dict(columns="label:TYPE"), ConfigError, "OUTPUT=COLUMN pairs"),
        (dict(columns={}), ConfigError, "columns maps outputs to your columns"),
        (dict(columns={"label": "TYPE; DROP TABLE x"}), ConfigError, "is not allowed"),
        (dict(columns={"top_k": "TOPS"}), ConfigError, "top_k is 0"),
        (dict(stage="@nowhere"), StageError, "no stage named 'nowhere'"),
        (dict(image="CONFIDENCE"), TableError, "is DOUBLE, not BLOB or file"),
        (dict(stage=None), TableError, "holds no '@stage/path' references; if it holds paths relative to a stage, pass stage="),
        (dict(columns={"score": "TYPE"}), TableError, "column 'TYPE' of 'clothing_test' is VARCHAR, which cannot hold score"),
        (dict(columns={"predicted_at": "CONFIDENCE"}), TableError, "cannot hold predicted_at"),
        (dict(columns={"label": "file_name"}), TableError, "it is the row key and the image column of 'clothing_test'"),
        (dict(columns={"label": "TYPE", "error": "type"}), TableError, "label and error would both be written to column 'type'"),
        (dict(key="nope"), TableError, "has no column 'nope' for key="),
    ],
)
def test_mistakes_are_one_sentence_and_change_nothing(tutorial, kwargs, error, sentence):
    with tutorial.warehouse.cursor() as cursor:
        before = cursor.execute("DESCRIBE clothing_test").fetchall()
    with pytest.raises(error, match=sentence.replace("(", r"\(").replace("?", r"\?")) as raised:
        tutorial.predict("clf@prod", "clothing_test", **{**TUTORIAL, **kwargs})
    assert "\n" not in str(raised.value)
    with tutorial.warehouse.cursor() as cursor:
        assert cursor.execute("DESCRIBE clothing_test").fetchall() == before
    assert tutorial.sql("SELECT count(TYPE) AS n FROM clothing_test").to_pylist() == [{"n": 0}]


@pytest.mark.parametrize(
    "args, sentence",
    [
        (["--columns", "lable=TYPE"], "no output is called 'lable'"),
        (["--columns", "label=TYPE,score"], "columns takes OUTPUT=COLUMN pairs separated by commas, e.g. label=TYPE,score=CONFIDENCE; 'score' is not one"),
        (["--columns", "label=TYPE,label=KIND"], "columns maps 'label' twice"),
        (["--stage", "@nowhere"], "no stage named 'nowhere'"),
        (["--image", "CONFIDENCE"], "is DOUBLE, not BLOB or file"),
        (["--columns", "score=TYPE"], "which cannot hold score"),
        (["--model", "clf@prod"], "give the model once"),
    ],
)
def test_cli_mistakes_exit_2_with_one_sentence(tutorial, warehouse, monkeypatch, capsys, args, sentence):
    tutorial.close()
    base = ["predict", "clf@prod", "-w", str(warehouse), "--no-progress", "-t", "clothing_test", "--image", "file_name",
            "--stage", "@clothing", "--columns", CLI_COLUMNS]
    code, out, err = run_main(monkeypatch, capsys, [*base, *args])
    assert code == 2 and "Traceback" not in out + err, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and sentence in err, err


# ---- the Dask runner ---------------------------------------------------------------------------
@pytest.mark.dask
@pytest.mark.slow
def test_dask_workers_stat_and_read_the_paths_themselves_and_agree_with_the_local_runner(tutorial, clothing_dir):
    tutorial.sql("INSERT INTO clothing_test (file_name) VALUES ('shirt/gone.jpg')")
    local = tutorial.predict("clf@prod", "clothing_test", into="by_local", **TUTORIAL)
    dask = tutorial.predict("clf@prod", "clothing_test", into="by_dask", runner=DaskRunner(workers=1), **TUTORIAL)
    assert (dask.predicted, dask.errors, dask.runner) == (local.predicted, local.errors, "dask") == (ROWS + 1, 1, "dask")
    a, b = rows_of(tutorial, "by_local"), rows_of(tutorial, "by_dask")
    assert set(a) == set(b) and "does not exist" in b["shirt/gone.jpg"]["prediction_error"]
    for path in a:
        assert a[path]["TYPE"] == b[path]["TYPE"] and a[path]["predicted_sha256"] == b[path]["predicted_sha256"]
        assert a[path]["CONFIDENCE"] == pytest.approx(b[path]["CONFIDENCE"], abs=1e-6)
    rerun = tutorial.predict("clf@prod", "clothing_test", into="by_dask", runner=DaskRunner(workers=1), **TUTORIAL)
    assert (rerun.predicted, rerun.skipped) == (1, ROWS)  # only the missing file's row is tried again
