"""Training on a real warehouse with real images (textile JPEGs from conformal-clip-data).

Runs are tiny (a dozen images, 64 px, 1-2 epochs) so the fast tier stays fast; what is
checked is behaviour: splits, the log, checkpoints, resume, failure states and registration.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sightql
from sightql.errors import ConfigError, SightQLError, TableError
from sightql.train.evaluate import report
from sightql.train.options import TrainOptions
from sightql.train.sources import Example, stage_examples
from sightql.train.splits import split_by_column, split_by_content

TINY = dict(epochs=1, image_size=64, batch_size=4, progress=False, seed=0)
CLI = [sys.executable, "-m", "sightql"]
XRAY = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray"


def _textile_files(per_class: int) -> dict[str, list[Path]]:
    import conformal_clip_data

    return {
        "local": sorted(conformal_clip_data.local_dir().glob("*.jpg"))[:per_class],
        "nominal": sorted(conformal_clip_data.nominal_dir().glob("*.jpg"))[:per_class],
    }


@pytest.fixture
def textile_stage(session):
    """@tex/train/<class>/ with 5 real JPEGs per class plus exact copies under other names; @tex/test/."""
    stage = session.create_stage("tex")
    files = _textile_files(7)
    for label, paths in files.items():
        for path in paths[:5]:
            stage.write_bytes(f"train/{label}/{path.name}", path.read_bytes())
        for path in paths[:2]:  # the same bytes again, renamed: must never straddle the split
            stage.write_bytes(f"train/{label}/copy_of_{path.name}", path.read_bytes())
        for path in paths[5:7]:
            stage.write_bytes(f"test/{label}/{path.name}", path.read_bytes())
        stage.write_bytes(f"test/{label}/again_{paths[0].name}", paths[0].read_bytes())  # a training image
    return stage


@pytest.fixture
def textile_table(session):
    """A table with an image BLOB column and a label column, loaded with load_images."""
    files = _textile_files(5)
    folder = session.home.parent / "textile-files"
    for label, paths in files.items():
        (folder / label).mkdir(parents=True)
        for path in paths:
            (folder / label / path.name).write_bytes(path.read_bytes())
    session.load_images("textile", folder, inline=True)  # training reads BLOB tables
    session.sql("ALTER TABLE textile ADD COLUMN defect VARCHAR")
    session.sql("UPDATE textile SET defect = split_part(relative_path, '/', 1)")
    return "textile"


def _run(session, run_id: str) -> dict:
    return session.sql("SELECT * FROM training_runs WHERE run_id = ?", [run_id]).to_pylist()[0]


# ---- splits -----------------------------------------------------------------------
def _examples(counts: dict[str, int], copies: int = 0) -> list[Example]:
    out = []
    for label, n in counts.items():
        for i in range(n):
            sha = f"{label}-{i}"
            out.append(Example(len(out), label, sha, f"{label}/{i}.jpg"))
            if i < copies:
                out.append(Example(len(out), label, sha, f"{label}/copy-{i}.jpg"))
    return out


def test_split_keeps_copies_together_is_stratified_and_reproducible():
    examples = _examples({"a": 20, "b": 10}, copies=5)
    split = split_by_content(examples, 0.3, seed=1)
    assert split.overlap() == set()
    val_hashes = {e.sha256 for e in split.val}
    assert sum(h.startswith("a-") for h in val_hashes) == 6 and sum(h.startswith("b-") for h in val_hashes) == 3
    assert len(split.train) + len(split.val) == len(examples)
    again = split_by_content(list(reversed(examples)), 0.3, seed=1)
    assert {e.sha256 for e in again.val} == val_hashes  # the order rows arrive in does not matter
    assert {e.sha256 for e in split_by_content(examples, 0.3, seed=2).val} != val_hashes


def test_split_column_drops_validation_copies_of_training_images():
    examples = [Example(0, "a", "x", "0", "train"), Example(1, "a", "x", "1", "val"), Example(2, "b", "y", "2", "val"),
                Example(3, "b", "z", "3", "train")]
    with pytest.warns(UserWarning, match="exact copies"):
        split = split_by_column(examples, "part")
    assert [e.key for e in split.val] == [2]
    with pytest.raises(ConfigError, match="use 'train' or 'val'"):
        split_by_column([Example(0, "a", "x", "0", "test")], "part")


def test_stage_split_puts_renamed_copies_on_one_side(session, textile_stage):
    examples, _ = stage_examples(session.warehouse, session.stages, "@tex/train", "folder")
    assert len(examples) == 14 and len({e.sha256 for e in examples}) == 10
    for seed in range(5):
        split = split_by_content(examples, 0.4, seed)
        assert split.overlap() == set()
        assert {e.label for e in split.val} == {"local", "nominal"}


def test_report_has_per_class_scores_confusion_matrix_and_auc():
    targets = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    result = report(targets, probabilities, ["NORMAL", "PNEUMONIA"])
    assert result["accuracy"] == 0.75
    assert result["confusion_matrix"] == [[1, 1], [0, 2]]
    assert result["per_class"]["PNEUMONIA"]["recall"] == 1.0
    assert result["per_class"]["NORMAL"]["precision"] == 1.0
    assert result["roc_auc"] == 1.0  # every PNEUMONIA scores above every NORMAL
    assert report(np.array([0, 1, 2]), np.eye(3), ["a", "b", "c"])["roc_auc"] is None


def test_the_evaluation_report_equals_scikit_learn():
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

    from sightql.train.evaluate import report

    rng = np.random.default_rng(0)
    areas = 0
    for case in range(60):
        classes = int(rng.integers(2, 6))
        n = int(rng.integers(1, 40))
        targets = rng.integers(0, classes, n)
        # Coarse scores: many ties; some classes never true or never predicted.
        probabilities = rng.integers(0, 4, (n, classes)).astype(np.float64) + 0.01 * (np.arange(classes) == case % classes)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        labels = [f"c{i}" for i in range(classes)]
        ours = report(targets, probabilities, labels)
        predicted = probabilities.argmax(axis=1)
        precision, recall, f1, support = precision_recall_fscore_support(
            targets, predicted, labels=list(range(classes)), zero_division=0)
        assert ours["confusion_matrix"] == confusion_matrix(targets, predicted, labels=list(range(classes))).tolist()
        assert [ours["per_class"][label] for label in labels] == [
            {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for p, r, f, s in zip(precision, recall, f1, support)]
        assert ours["macro_f1"] == float(np.mean(f1))
        if classes == 2 and len(set(targets.tolist())) == 2:
            assert ours["roc_auc"] == float(roc_auc_score(targets, probabilities[:, 1])), case
            areas += 1
        else:
            assert ours["roc_auc"] is None
    assert areas >= 5


# ---- runs -------------------------------------------------------------------------
@pytest.mark.slow
def test_train_from_stage_logs_evaluates_registers_and_classifies_in_sql(session, textile_stage):
    # The textile data set repeats two of its test images in train: SightQL says so and leaves them out.
    with pytest.warns(UserWarning, match="2 test image.s. are exact copies of training images"):
        result = session.train("tex", "@tex/train", label="folder", test="@tex/test", **{**TINY, "epochs": 2})
    assert result.status == "completed" and result.registered_version == "tex@v1"
    log = session.sql("SELECT * FROM training_log WHERE run_id = ? ORDER BY epoch", [result.run_id]).to_pylist()
    assert [r["epoch"] for r in log] == [0, 1, 2]  # epoch 0: the linear probe
    assert all(r["seconds"] > 0 and r["images_per_s"] > 0 and 0 <= r["val_acc"] <= 1 for r in log)
    run = _run(session, result.run_id)
    assert run["status"] == "completed" and run["registered_version"] == "tex@v1" and run["best_epoch"] in (0, 1, 2)
    params = json.loads(run["params"])
    assert params["extra"]["train_images"] + params["extra"]["val_images"] == 14

    version = session.registry.get_model("tex").version("v1")
    assert version.card.labels == ("local", "nominal")
    assert (version.card.input.height, version.card.input.mean) == (64, (0.5, 0.5, 0.5))
    assert version.metrics["val_accuracy"] == result.evaluation["accuracy"]
    assert "test_accuracy" in version.metrics

    evaluations = session.sql("SELECT dataset, report FROM training_evaluations WHERE run_id = ? ORDER BY dataset",
                              [result.run_id]).to_pylist()
    assert [e["dataset"] for e in evaluations] == ["test", "validation"]
    test_report = json.loads(evaluations[0]["report"])
    assert test_report["left_out_copies_of_training_images"] == 2 and test_report["images"] == 4
    assert np.array(test_report["confusion_matrix"]).sum() == 4

    rows = session.sql(
        "SELECT classify('tex', stage_file('@tex', relative_path)) AS c FROM directory('@tex/test')"
    ).to_pylist()
    assert len(rows) == 6 and all(r["c"]["label"] in ("local", "nominal") and r["c"]["error"] is None for r in rows)


@pytest.mark.slow
def test_interrupted_run_keeps_a_checkpoint_and_resumes(session, textile_table, monkeypatch):
    from sightql.train.loop import Loop

    original = Loop._train_one_epoch

    def interrupt_in_epoch_two(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Loop, "_train_one_epoch", interrupt_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        session.train("tab", "textile", label="defect", register=False, **{**TINY, "epochs": 2})
    (run,) = session.sql("SELECT * FROM training_runs").to_pylist()
    assert run["status"] == "interrupted" and "resume" in run["error"]
    checkpoint = session.sql("SELECT * FROM training_checkpoints WHERE run_id = ?", [run["run_id"]]).to_pylist()
    assert [c["epoch"] for c in checkpoint] == [1] and (session.home / checkpoint[0]["path"]).is_file()

    monkeypatch.setattr(Loop, "_train_one_epoch", original)
    result = session.train(resume=run["run_id"], progress=False)
    assert result.status == "completed" and _run(session, run["run_id"])["status"] == "completed"
    epochs = session.sql("SELECT epoch FROM training_log WHERE run_id = ? ORDER BY epoch", [run["run_id"]]).to_pylist()
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    kept = session.sql("SELECT epoch FROM training_checkpoints WHERE run_id = ?", [run["run_id"]]).to_pylist()
    assert kept == [{"epoch": 2}]  # only the newest is kept
    with pytest.raises(ConfigError, match="already completed"):
        session.train(resume=run["run_id"], progress=False)


@pytest.mark.slow
def test_checkpoint_holds_only_tensors_and_plain_values(session, textile_table):
    import torch

    result = session.train("tab", "textile", label="defect", register=False, **TINY)
    (row,) = session.sql("SELECT path FROM training_checkpoints WHERE run_id = ?", [result.run_id]).to_pylist()
    state = torch.load(session.home / row["path"], weights_only=True)  # refuses any pickled object
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "rng"} <= set(state)
    assert state["epoch"] == 1 and isinstance(state["rng"]["torch"], torch.Tensor)


def test_failure_mid_training_marks_the_run_failed_and_reraises(session, textile_table, monkeypatch):
    from sightql.train.loop import Loop

    def broken(self, epoch):
        raise RuntimeError("simulated failure in epoch 1")

    monkeypatch.setattr(Loop, "_train_one_epoch", broken)
    with pytest.raises(RuntimeError, match="simulated failure"):
        session.train("tab", "textile", label="defect", **TINY)
    (run,) = session.sql("SELECT status, error, finished_at FROM training_runs").to_pylist()
    assert run["status"] == "failed" and "simulated failure in epoch 1" in run["error"] and run["finished_at"]
    assert session.registry.model_names() == []


def test_missing_label_column_is_one_sentence_and_a_failed_run(session, textile_table):
    with pytest.raises(TableError, match="has no label column 'species'; its columns are"):
        session.train("tab", "textile", label="species", **TINY)
    (run,) = session.sql("SELECT status, error FROM training_runs").to_pylist()
    assert run["status"] == "failed" and "species" in run["error"]


def test_bad_arguments_are_refused_before_a_run_starts(session):
    with pytest.raises(ConfigError, match="freeze="):
        session.train("x", "t", freeze="half", progress=False)
    with pytest.raises(ConfigError, match="schedule="):
        session.train("x", "t", schedule="linear", progress=False)
    assert session.sql("SELECT count(*) AS n FROM training_runs").to_pylist() == [{"n": 0}]


# ---- settings: TrainOptions, keyword overrides, JSON ------------------------------------
def test_keywords_override_an_options_record_and_the_run_stores_the_result(session):
    options = TrainOptions(name="ignored", source="ignored", lr=0.01, weight_decay=0.2, freeze=2,
                           class_weights={"a": 2.0}, image_size=96)
    with pytest.raises(TableError, match="no_such_table"):  # the run is recorded, then reading the source fails
        session.train("m", "no_such_table", options, batch_size=4, image_size=None, epochs=None, progress=False)
    (run,) = session.sql("SELECT name, status, params FROM training_runs").to_pylist()
    params = json.loads(run["params"])
    assert run["name"] == "m" and run["status"] == "failed"
    assert params == {**options.to_json_dict(), "name": "m", "source": "no_such_table", "batch_size": 4,
                      "image_size": None}  # None sets a setting that may be None, and leaves epochs as it was


def test_an_unknown_setting_is_one_sentence_naming_the_close_match(session):
    with pytest.raises(ConfigError, match=r"^epoch= is not a training setting; did you mean epochs=\?$"):
        session.train("m", "t", epoch=3, progress=False)
    with pytest.raises(ConfigError, match="^zzz= is not a training setting; see TrainOptions in docs/training.md"):
        session.train("m", "t", zzz=3, progress=False)
    with pytest.raises(ConfigError, match="only epochs= may be given"):
        session.train(resume="run-x", lr=0.1, progress=False)
    assert session.sql("SELECT count(*) AS n FROM training_runs").to_pylist() == [{"n": 0}]


def test_options_survive_a_json_round_trip_and_bad_json_is_one_sentence():
    options = TrainOptions(name="m", source="@s/train", label="folder", weights_path="w.pth", schedule="step", freeze=3,
                           unfreeze_after=1, image_size=96, resize="squash", augment="standard", amp=False, patience=2,
                           class_weights={"a": 2.0, "b": 0.5}, test="@s/test", register=False, decode_threads=2,
                           extra={"note": [1, 2]})
    again = TrainOptions.from_json(options.to_json())
    assert again == options and isinstance(again.freeze, int) and again.class_weights == {"a": 2.0, "b": 0.5}
    assert TrainOptions.from_json(TrainOptions(name="m", source="t").to_json()) == TrainOptions(name="m", source="t")
    with pytest.raises(ConfigError, match="batchsize= is not a training setting; did you mean batch_size="):
        TrainOptions.from_json('{"name": "m", "source": "t", "batchsize": 4}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrainOptions.from_json("{name: m}")
    with pytest.raises(ConfigError, match="epochs=0 is not valid"):
        TrainOptions.from_json('{"name": "m", "source": "t", "epochs": 0}')
    with pytest.raises(ConfigError, match="^epochs='3' is not valid; use a whole number or None$"):
        TrainOptions.from_json('{"name": "m", "source": "t", "epochs": "3"}')
    with pytest.raises(ConfigError, match="^lr='fast' is not valid; use a positive learning rate such as 1e-3, or 'auto'$"):
        TrainOptions(name="m", source="t", lr="fast")
    with pytest.raises(ConfigError, match="^resize='crop' is not valid; use 'squash'"):
        TrainOptions(name="m", source="t", resize="crop")
    assert TrainOptions.from_json(TrainOptions(name="m", source="t", lr=0.01, patience=0, resize="pad").to_json()).lr == 0.01
    with pytest.raises(ConfigError, match="^patience=1.5 is not valid; use a whole number or None$"):
        TrainOptions(name="m", source="t", patience=1.5)


def test_torchvision_base_offline_without_weights_says_how_to_fix(session, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where torch wants its cache folder")
    monkeypatch.setenv("TORCH_HOME", str(blocker / "hub"))  # the download fails at once (OSError), no network used
    from sightql.train.bases import build_base

    with pytest.raises(ConfigError, match=r"cannot download the pretrained resnet18 weights .*pass weights_path="):
        build_base(session.warehouse, session.registry, "resnet18", 2)
    with pytest.raises(ConfigError, match="is not known"):
        build_base(session.warehouse, session.registry, "no_such_net", 2)


def test_freeze_backbone_trains_only_the_head(session):
    from sightql.train.bases import apply_freeze, build_base

    base = build_base(session.warehouse, session.registry, "efficientnet_lite0", 3)
    trainable = apply_freeze(base, "backbone")
    assert trainable == 2 and base.head.out_features == 3  # the new head's weight and bias
    partly = apply_freeze(base, 3)
    assert 2 < partly < sum(1 for _ in base.module.parameters())
    with pytest.raises(ConfigError, match="at most"):
        apply_freeze(base, 999)


# ---- the command line ---------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_missing_label_column_exits_2_and_marks_the_run_failed(warehouse, session, textile_table):
    session.close()
    result = _cli("train", "--from", "textile", "--label", "species", "--register", "tab", "-w", str(warehouse))
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert "no label column 'species'" in result.stderr
    with sightql.connect(warehouse) as again:
        (run,) = again.sql("SELECT status FROM training_runs").to_pylist()
        assert run["status"] == "failed"
    assert "failed" in _cli("runs", "ls", "-w", str(warehouse)).stdout


def test_cli_takes_options_from_a_json_file_and_flags_override_it(warehouse, session, tmp_path):
    session.close()
    options = TrainOptions(name="m", source="no_such_table", lr=0.01, weight_decay=0.2, decode_threads=2)
    (tmp_path / "options.json").write_text(options.to_json())
    result = _cli("train", "--options-json", str(tmp_path / "options.json"), "--epochs", "3", "--no-amp",
                  "-w", str(warehouse))
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "no_such_table" in result.stderr
    with sightql.connect(warehouse) as again:
        (run,) = again.sql("SELECT params FROM training_runs").to_pylist()
    assert json.loads(run["params"]) == {**options.to_json_dict(), "epochs": 3, "amp": False}


@pytest.mark.slow
def test_cli_unreadable_image_mid_training_exits_2_and_marks_the_run_failed(warehouse, session, textile_stage):
    good = textile_stage.read_bytes(textile_stage.list("train/local")[0].relative_path)
    textile_stage.write_bytes("train/local/truncated.jpg", good[: len(good) // 3])  # header fine, pixels missing
    session.close()
    result = _cli("train", "--from", "@tex/train", "--label", "folder", "--register", "tex", "--epochs", "1",
                  "--image-size", "64", "--batch-size", "4", "--val-fraction", "0.3", "-w", str(warehouse))
    assert result.returncode == 2, result.stderr
    assert "truncated.jpg" in result.stderr and "remove or replace it" in result.stderr
    with sightql.connect(warehouse) as again:
        (run,) = again.sql("SELECT run_id, status, error FROM training_runs").to_pylist()
        assert run["status"] == "failed" and "truncated.jpg" in run["error"]
    shown = _cli("runs", "show", run["run_id"], "-w", str(warehouse))
    assert shown.returncode == 0 and "status:" in shown.stdout and "failed" in shown.stdout


@pytest.mark.slow
def test_cli_trains_registers_and_shows_a_run(warehouse, session, textile_stage):
    session.close()
    result = _cli("train", "--from", "@tex/train", "--label", "folder", "--register", "tex", "--epochs", "2",
                  "--image-size", "64", "--batch-size", "4", "--test", "@tex/test", "-w", str(warehouse))
    assert result.returncode == 0, result.stderr
    assert "registered tex@v1" in result.stdout and "test accuracy" in result.stdout
    run_id = re.search(r"run (run-\S+) completed", result.stdout).group(1)
    shown = _cli("runs", "show", run_id, "-w", str(warehouse)).stdout
    assert "completed" in shown and "validation: accuracy" in shown and "test: accuracy" in shown


@pytest.mark.slow
def test_resnet18_from_a_weights_file_registers_a_state_dict(session, textile_table, tmp_path):
    import torch
    import torchvision

    weights = tmp_path / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)  # stands in for the downloaded file
    result = session.train("rn", "textile", label="defect", base="resnet18", weights_path=str(weights),
                           freeze="backbone", **TINY)
    version = session.registry.get_model("rn").version("v1")
    assert version.record.options == {"architecture": "resnet18", "format": "state_dict"}
    assert version.card.input.mean == (0.485, 0.456, 0.406) and version.card.input.height == 64
    again = session.train("rn2", "textile", label="defect", base="rn@v1", **TINY)  # continue from the registry
    assert again.registered_version == "rn2@v1" and result.status == "completed"


@pytest.mark.slow
@pytest.mark.skipif(not XRAY.is_dir(), reason="the shared chest X-ray sample is absent")
def test_chest_xray_stage_trains_and_reports_auc_on_test(session):
    session.create_stage("xray").put(str(XRAY))
    result = session.train("xray", "@xray/train", label="folder", test="@xray/test", epochs=1, image_size=96,
                           batch_size=8, progress=False)
    assert result.labels == ["NORMAL", "PNEUMONIA"]
    assert result.test_evaluation["images"] == 42 and 0 <= result.test_evaluation["roc_auc"] <= 1


@pytest.mark.slow
def test_training_from_a_registered_trained_version(session, textile_table):
    first = session.train("tab", "textile", label="defect", **TINY)
    second = session.train("tab2", "textile", label="defect", base=first.registered_version, **TINY)
    assert second.registered_version == "tab2@v1"
    assert json.loads(_run(session, second.run_id)["params"])["extra"]["base_kind"] == "efficientnet_lite0"


def test_stage_label_must_be_folder(session, textile_stage):
    with pytest.raises(SightQLError, match="label='folder'"):
        session.train("tex", "@tex/train", label="kind", **TINY)
