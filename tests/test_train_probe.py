"""The probe epoch (epoch 0): a linear probe on the frozen body before fine-tuning, so a run is never worse than one.

Real textile JPEGs, the real bundled EfficientNet-Lite0, 64 px, 1-2 epochs.
"""

from __future__ import annotations

import re

import pytest
import torch

import sightql
from sightql.train.probe import NOT_BEATEN, Features, fit_head
from sightql.train.sources import stage_examples
from sightql.train.splits import split_by_content
from tests.test_train import TINY, _cli, _run, _textile_files, textile_stage, textile_table  # noqa: F401 - fixtures

NEW_COLUMNS = ("probe_val_acc", "probe_val_loss", "best_val_acc", "stop_reason")


def _log(session, run_id: str) -> list[dict]:
    return session.sql("SELECT * FROM training_log WHERE run_id = ? ORDER BY epoch", [run_id]).to_pylist()


def test_fit_head_folds_the_scaling_into_the_layer_and_is_deterministic():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 40, generator=generator) * 2
    targets = torch.arange(90) % 3
    values = centres[targets] + torch.randn(90, 40, generator=generator)
    values[:, 5] = 7.0  # a constant feature: no division by zero
    values[:, 6] *= 1000.0  # a feature on another scale
    train, val = Features(values[:60], targets[:60]), Features(values[60:], targets[60:])
    weight, bias, penalty = fit_head(train, val, 3)
    again = fit_head(train, val, 3)
    assert torch.equal(weight, again[0]) and torch.equal(bias, again[1]) and penalty == again[2]
    assert weight.shape == (3, 40) and bias.shape == (3,) and torch.isfinite(weight).all()
    accuracy = float(((val.values @ weight.T + bias).argmax(dim=1) == val.targets).double().mean())
    assert accuracy > 0.9  # the raw features through the folded layer: the centring and scaling are inside it


def test_the_probe_epoch_is_epoch_0_of_the_log_and_its_figures_are_in_training_runs(session, textile_table):
    result = session.train("tab", "textile", label="defect", register=False, **TINY)
    log = _log(session, result.run_id)
    assert [r["epoch"] for r in log] == [0, 1]
    probe = log[0]
    assert probe["lr"] == 0 and probe["seconds"] > 0 and probe["images_per_s"] > 0 and 0 <= probe["val_acc"] <= 1
    run = _run(session, result.run_id)
    assert run["probe_val_acc"] == probe["val_acc"] == result.probe_val_acc
    assert run["probe_val_loss"] == probe["val_loss"] == result.probe_val_loss
    best = log[run["best_epoch"]]
    assert run["best_val_acc"] == best["val_acc"] == result.best_val_acc and best["val_acc"] >= probe["val_acc"]
    assert result.history[0]["epoch"] == 0


def test_the_probe_pass_fills_the_image_cache_so_epoch_1_decodes_nothing_again(session, textile_table, monkeypatch):
    from sightql.images.preprocess import Transform

    decoded: list[int] = []
    real_decode = Transform.decode
    monkeypatch.setattr(Transform, "decode", lambda self, data: decoded.append(1) or real_decode(self, data))
    rows = session.sql("SELECT count(*) AS n FROM textile").to_pylist()[0]["n"]
    session.train("tab", "textile", label="defect", register=False, lr=1e-3, **TINY)
    with_cache = len(decoded)
    decoded.clear()
    session.train("tab", "textile", label="defect", register=False, lr=1e-3, image_cache_mb=0, **TINY)
    # probe pass, epoch 1 and its validation, the final evaluation: each row decoded once, not once a pass
    assert with_cache == rows and len(decoded) > 2 * rows


def test_no_probe_trains_as_before(session, textile_table):
    result = session.train("tab", "textile", label="defect", register=False, probe=False, **TINY)
    assert [r["epoch"] for r in _log(session, result.run_id)] == [1]
    run = _run(session, result.run_id)
    assert run["probe_val_acc"] is None and result.probe_val_acc is None and run["best_epoch"] == 1


def test_a_warehouse_made_before_the_probe_gains_the_new_columns_when_opened(warehouse):
    with sightql.connect(warehouse) as session:
        for column in NEW_COLUMNS:
            session.sql(f"ALTER TABLE training_runs DROP COLUMN {column}")
        session.sql("INSERT INTO training_runs (run_id, name, status, params, started_at) "
                    "VALUES ('run-old', 'm', 'completed', '{}', now())")
    with sightql.connect(warehouse) as session:
        (run,) = session.sql("SELECT * FROM training_runs").to_pylist()
    assert run["run_id"] == "run-old" and all(run[column] is None for column in NEW_COLUMNS)


@pytest.mark.slow
def test_failed_fine_tuning_registers_the_probe_head_and_says_so(warehouse, session, textile_stage):
    session.close()
    out = _cli("train", "--from", "@tex/train", "--label", "folder", "--register", "tex", "--epochs", "2",
               "--lr", "1000", "--image-size", "64", "--batch-size", "4", "--val-fraction", "0.3", "-w", str(warehouse))
    assert out.returncode == 0, out.stderr
    assert "best epoch 0" in out.stdout and NOT_BEATEN in out.stdout and "probe (epoch 0) validation accuracy" in out.stdout
    run_id = re.search(r"run (run-\S+) completed", out.stdout).group(1)
    shown = _cli("runs", "show", run_id, "-w", str(warehouse)).stdout
    assert re.search(r"probe_val_acc:\s+[0-9.]+", shown) and NOT_BEATEN in shown

    with sightql.connect(warehouse) as again:
        run = _run(again, run_id)
        assert run["best_epoch"] == 0 and run["registered_version"] == "tex@v1" and NOT_BEATEN in run["stop_reason"]
        assert [r["epoch"] for r in _log(again, run_id)] == [0, 1, 2]
        # The registered model on the held-out rows (the run's own split, made again) scores what the probe did.
        examples, _ = stage_examples(again.warehouse, again.stages, "@tex/train", "folder")
        held_out = split_by_content(examples, 0.3, 0).val
        predicted = again.sql(
            "SELECT relative_path, classify('tex', stage_file('@tex', relative_path)).label AS label "
            "FROM directory('@tex/train') WHERE list_contains(?, relative_path)", [[e.name for e in held_out]]
        ).to_pylist()
        truth = {e.name: e.label for e in held_out}
        assert len(predicted) == len(held_out) >= 4
        accuracy = sum(row["label"] == truth[row["relative_path"]] for row in predicted) / len(predicted)
        assert accuracy == pytest.approx(run["probe_val_acc"])


@pytest.mark.slow
def test_a_run_stopped_right_after_epoch_0_resumes_at_epoch_1(session, textile_table, monkeypatch):
    from sightql.train import run as run_module
    from sightql.train.loop import Loop

    original = Loop._train_one_epoch

    def killed_in_epoch_one(self, epoch):
        raise RuntimeError("killed during epoch 1")  # no Ctrl-C checkpoint: only epoch 0's is left

    monkeypatch.setattr(Loop, "_train_one_epoch", killed_in_epoch_one)
    with pytest.raises(RuntimeError, match="killed during epoch 1"):
        session.train("tab", "textile", label="defect", register=False, **{**TINY, "epochs": 2})
    (run,) = session.sql("SELECT * FROM training_runs").to_pylist()
    assert run["status"] == "failed" and run["best_epoch"] == 0
    checkpoints = session.sql("SELECT epoch FROM training_checkpoints WHERE run_id = ?", [run["run_id"]]).to_pylist()
    assert checkpoints == [{"epoch": 0}] and [r["epoch"] for r in _log(session, run["run_id"])] == [0]
    probe_row = _log(session, run["run_id"])[0]

    def no_second_probe(*args, **kwargs):
        raise AssertionError("a resume must not run the probe again")

    monkeypatch.setattr(Loop, "_train_one_epoch", original)
    monkeypatch.setattr(run_module, "probe_epoch", no_second_probe)
    result = session.train(resume=run["run_id"], progress=False)
    assert result.status == "completed" and [r["epoch"] for r in _log(session, run["run_id"])] == [0, 1, 2]
    assert _log(session, run["run_id"])[0] == probe_row and result.probe_val_acc == probe_row["val_acc"]
