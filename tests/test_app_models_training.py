"""The Models and Training pages, and background training jobs (sightql.train.jobs) they stand on."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

import sightql
from sightql.errors import ConfigError
from sightql.train.evaluate import confusion_cells, report
from sightql.train.jobs import job_status, jobs_dir, list_jobs, options_path, start_job
from sightql.train.options import TrainOptions
from sightql.train.progress_file import ProgressFile
from sightql.train.runs import RunStore
from tests.registry_models import tiny_classifier, write_onnx

PAGES = Path(sightql.__file__).parent / "app" / "views"


def _page(name: str, warehouse: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("SIGHTQL_HOME", str(warehouse))
    return AppTest.from_file(str(PAGES / name), default_timeout=300).run()


def _chart_rows(chart) -> list[dict]:
    """The data a st.altair_chart element carries (Arrow IPC in the message)."""
    return pa.ipc.open_stream(io.BytesIO(chart.proto.datasets[0].data.data)).read_all().to_pylist()


@pytest.fixture
def registered(warehouse, session, tmp_path):
    """'tiny' v1 (with a metric) and v2 (with a stored validation report, as training leaves one)."""
    onnx = write_onnx(tiny_classifier(2), tmp_path / "tiny.onnx")
    session.registry.log_model(onnx, "tiny", labels=["cat", "dog"], metrics={"val_accuracy": 0.75})
    v2 = session.registry.log_model(onnx, "tiny", labels=["cat", "dog"], metrics={"val_accuracy": 0.8})
    targets = np.array([0, 0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.6, 0.4]])
    RunStore(session.warehouse).add_evaluation("run-fixture", "validation", v2.ref,
                                               report(targets, probabilities, ["cat", "dog"]))
    session.close()
    return warehouse


# ---- models --------------------------------------------------------------------------
def test_models_page_shows_versions_aliases_metrics_and_confusion_matrix(registered, monkeypatch):
    at = _page("models.py", registered, monkeypatch)
    assert not at.exception and not at.error
    assert at.dataframe[0].value["name"].tolist() == ["tiny"]
    versions = at.dataframe[1].value.set_index("version")
    assert versions.index.tolist() == ["v1", "v2"] and versions.loc["v1", "val_accuracy"] == 0.75
    assert {m.label: m.value for m in at.metric} == {"val_accuracy": "0.8"}  # v2, the newest, is shown first
    (chart,) = at.get("vega_lite_chart")
    assert "validation set of run run-fixture: accuracy 0.600 on 5 image(s)" in chart.proto.spec
    counts = {(c["true"], c["predicted"]): c["count"] for c in _chart_rows(chart)}
    assert counts == {("cat", "cat"): 2, ("cat", "dog"): 1, ("dog", "cat"): 1, ("dog", "dog"): 1}

    at.selectbox(key="models_version").set_value("v1").run()
    assert {m.label: m.value for m in at.metric} == {"val_accuracy": "0.75"}
    assert not at.get("vega_lite_chart") and any("No confusion matrix" in c.value for c in at.caption)


def test_models_page_sets_an_alias_and_refuses_a_bad_one_in_one_sentence(registered, monkeypatch):
    at = _page("models.py", registered, monkeypatch)
    at.text_input[0].set_value("prod")
    at.selectbox[2].set_value("v1")
    at.button[0].click().run()
    assert [s.value for s in at.success] == ["tiny@prod now points at v1"]
    assert "`prod` → v1" in at.markdown[0].value and at.dataframe[1].value.set_index("version").loc["v1", "aliases"] == "prod"
    with sightql.connect(registered) as s:
        assert s.registry.get_model("tiny").aliases() == {"prod": "v1"}

    at.text_input[0].set_value("v2")
    at.button[0].click().run()
    assert not at.exception and len(at.error) == 1
    assert at.error[0].value == "alias 'v2' would be read as a version; pick a word such as 'prod' or 'staging'"


def test_models_page_on_an_empty_registry_says_how_to_add_one(warehouse, monkeypatch):
    at = _page("models.py", warehouse, monkeypatch)
    assert not at.exception and "sightql models log" in at.info[0].value


def test_confusion_cells_are_the_report_matrix_with_row_shares():
    cells = confusion_cells(report(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]]), ["a", "b"]))
    assert [(c["true"], c["predicted"], c["count"], c["share"]) for c in cells] == [
        ("a", "a", 1, 1.0), ("a", "b", 0, 0.0), ("b", "a", 1, 0.5), ("b", "b", 1, 0.5)]


# ---- jobs ----------------------------------------------------------------------------------
def test_bad_requests_are_refused_before_a_process_starts(warehouse):
    with pytest.raises(ConfigError, match="set label to 'folder'"):
        start_job(warehouse, TrainOptions(name="m", source="@xray/train", label="diagnosis"))
    with pytest.raises(ConfigError, match="say what to train on"):
        start_job(warehouse, TrainOptions(name="m", source=" "))
    with pytest.raises(ConfigError, match="model name"):
        start_job(warehouse, TrainOptions(name="bad name!", source="t"))
    with pytest.raises(ConfigError, match="epochs=0"):
        TrainOptions(name="m", source="t", epochs=0)  # what the page builds checks itself
    assert not jobs_dir(warehouse).exists() and list_jobs(warehouse) == []


def _wait_until_finished(warehouse: Path, job_id: str, seconds: float = 300):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = job_status(warehouse, job_id)
        if status.finished:
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {status.state} after {seconds} s")


def test_a_job_that_fails_reports_the_cli_sentence(warehouse, session):
    session.close()
    job = start_job(warehouse, TrainOptions(name="m", source="no_such_table", epochs=1))
    assert job.state in ("starting", "running") and job.pid > 0
    done = _wait_until_finished(warehouse, job.job_id)
    assert done.state == "failed" and "no_such_table" in done.error and "Traceback" not in done.error
    with sightql.connect(warehouse) as again:
        (run,) = again.sql("SELECT status, error FROM training_runs").to_pylist()
    assert run["status"] == "failed" and run["error"] == done.error  # the file and the catalog agree


def test_a_job_gets_its_options_as_json_not_flags(warehouse, session):
    session.close()
    options = TrainOptions(name="m", source="no_such_table", label="kind", base="resnet18", epochs=2, lr=0.003,
                           weight_decay=0.1, backbone_lr_factor=0.5, freeze=2, class_weights={"a": 2.0},
                           decode_threads=2, amp=False, register=False, extra={"note": "from the app"})
    job = start_job(warehouse, options)
    record = json.loads((jobs_dir(warehouse) / f"{job.job_id}.job.json").read_text())
    command = record["command"]
    assert command[command.index("--options-json") + 1] == str(options_path(warehouse, job.job_id))
    assert not {"--from", "--register", "--no-register", "--lr", "--epochs", "--label"} & set(command)
    assert TrainOptions.from_json(options_path(warehouse, job.job_id).read_text()) == options
    done = _wait_until_finished(warehouse, job.job_id)
    assert done.state == "failed" and "no_such_table" in done.error
    with sightql.connect(warehouse) as again:
        (run,) = again.sql("SELECT params FROM training_runs").to_pylist()
    assert json.loads(run["params"]) == options.to_json_dict()  # every setting arrived, the CLI's flags or not


def test_progress_file_tracks_steps_epochs_and_the_end(tmp_path):
    path = tmp_path / "p.json"
    progress = ProgressFile(path, min_interval=3600)
    progress.begin("run-1", "m", epochs=2)
    progress.epoch_started(1, 2, steps=2)
    progress.step(0.9, 0.5)  # throttled: not written yet
    assert json.loads(path.read_text())["step"] == 0
    progress.step(0.7, 0.75)  # the epoch's last step is always written
    assert json.loads(path.read_text())["step"] == 2
    progress.epoch_finished({"epoch": 1, "train_loss": 0.7, "val_acc": 0.5})
    progress.finish("completed", registered_version="m@v1")
    saved = json.loads(path.read_text())
    assert saved["state"] == "completed" and saved["registered_version"] == "m@v1"
    assert saved["history"] == [{"epoch": 1, "train_loss": 0.7, "val_acc": 0.5}]
    assert not list(tmp_path.glob("*.partial"))


# ---- training page ---------------------------------------------------------------------
@pytest.fixture
def textile_warehouse(warehouse, session):
    """@tex/train/<class>/ with 5 real textile JPEGs per class."""
    import conformal_clip_data

    stage = session.create_stage("tex")
    for label, folder in (("local", conformal_clip_data.local_dir()), ("nominal", conformal_clip_data.nominal_dir())):
        for path in sorted(folder.glob("*.jpg"))[:5]:
            stage.write_bytes(f"train/{label}/{path.name}", path.read_bytes())
    session.close()
    return warehouse


@pytest.mark.slow
def test_training_page_starts_a_run_follows_it_and_shows_the_registered_result(textile_warehouse, monkeypatch):
    at = _page("training.py", textile_warehouse, monkeypatch)
    assert not at.exception and "No training runs" in at.caption[0].value
    at.text_input[0].set_value("@tex/train")
    at.text_input[3].set_value("tex")
    at.number_input[0].set_value(1)  # epochs
    at.number_input[1].set_value(4)  # batch size
    at.number_input[2].set_value(0.001)  # learning rate (empty: a range test first)
    at.number_input[3].set_value(64)  # image size
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert "is running" in at.info[0].value and len(at.get("progress")) == 1  # the page did not wait for the run

    deadline = time.monotonic() + 300
    while not at.success and time.monotonic() < deadline:
        time.sleep(2)
        at.run()
        assert not at.exception and not at.error
    assert [s.value for s in at.success][0].endswith("registered tex@v1")
    assert "Registered tex@v1" in at.success[1].value
    (job,) = list_jobs(textile_warehouse)
    with sightql.connect(textile_warehouse) as s:
        log = RunStore(s.warehouse).epochs(job.run_id).to_pylist()
        (evaluation,) = RunStore(s.warehouse).evaluations(job.run_id)
        assert s.registry.get_model("tex").version("v1").card.labels == ("local", "nominal")
    assert len(log) == 2 and [h["train_loss"] for h in job.history] == pytest.approx([r["train_loss"] for r in log])
    shown = at.dataframe[0].value  # epoch 0 is the linear probe
    assert shown["epoch"].tolist() == [0, 1] and shown["val_acc"].tolist() == pytest.approx([r["val_acc"] for r in log])
    assert len(at.get("vega_lite_chart")) == 3  # loss, accuracy and the validation confusion matrix

    models = _page("models.py", textile_warehouse, monkeypatch)  # the Models page sees the trained version
    (heatmap,) = models.get("vega_lite_chart")
    assert sum(c["count"] for c in _chart_rows(heatmap)) == evaluation["report"]["images"] > 0


@pytest.mark.slow
def test_stopping_a_job_interrupts_the_run_like_ctrl_c(textile_warehouse):
    from sightql.train.jobs import stop_job

    job = start_job(textile_warehouse, TrainOptions(name="tex", source="@tex/train", label="folder", epochs=3,
                                                    batch_size=4, image_size=64))
    deadline = time.monotonic() + 300
    while job_status(textile_warehouse, job.job_id).phase != "training" and time.monotonic() < deadline:
        time.sleep(0.2)
    stop_job(textile_warehouse, job.job_id)
    done = _wait_until_finished(textile_warehouse, job.job_id)
    assert done.state == "interrupted" and f"--resume {done.run_id}" in done.error
    with pytest.raises(ConfigError, match="already ended"):
        stop_job(textile_warehouse, job.job_id)
    with sightql.connect(textile_warehouse) as s:
        (run,) = s.sql("SELECT status FROM training_runs WHERE run_id = ?", [done.run_id]).to_pylist()
        assert run["status"] == "interrupted" and s.registry.model_names() == []
