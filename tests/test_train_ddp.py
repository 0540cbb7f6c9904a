"""Training over two processes with torchrun on the CPU (Gloo): DistributedDataParallel for real.

Only rank 0 opens the warehouse; rank 1 reads the rows rank 0 copies for it. The runs are
tiny (13 real textile JPEGs, 64 px, 2 epochs) and each rank uses one CPU thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import sightql
from sightql.errors import ConfigError
from sightql.train.dataset import shard_sampler
from sightql.train.shared_rows import ROWS_FILE, SharedRowsReader, write_rows
from sightql.train.sources import stage_examples
from sightql.train.splits import split_by_content
from tests.test_train import _textile_files

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sightql", "train"]
TRAIN = ["--from", "@tex/train", "--label", "folder", "--register", "tex", "--epochs", "2", "--image-size", "64",
         "--batch-size", "5"]  # 11 training rows: rank 0 gets 6 (batches of 5 and 1), rank 1 gets 5 (one batch)


@pytest.fixture
def stage_of_13(session):
    """@tex/train/local (7 real JPEGs) and @tex/train/nominal (6): 11 train and 2 validation rows at seed 0."""
    stage = session.create_stage("tex")
    for label, paths in _textile_files(7).items():
        for path in paths[: 7 if label == "local" else 6]:
            stage.write_bytes(f"train/{label}/{path.name}", path.read_bytes())
    return stage


def _torchrun(warehouse, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SIGHTQL_DDP_TIMEOUT": "120"}
    return subprocess.run([*TORCHRUN, *args, "-w", str(warehouse)], capture_output=True, text=True, timeout=300,
                          env=env)


def test_shards_cover_every_row_once_per_epoch_and_reshuffle():
    rows = list(range(11))
    epochs = []
    for epoch in (1, 2):
        shards = []
        for rank in (0, 1):
            sampler = shard_sampler(rows, rank, 2, shuffle=True, seed=3)
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
            assert len(sampler) == len(shards[-1])
        assert sorted(shards[0] + shards[1]) == rows and [len(s) for s in shards] == [6, 5]
        epochs.append(shards)
    assert epochs[0] != epochs[1]
    validation = [list(shard_sampler(rows, rank, 2, shuffle=False, seed=3)) for rank in (0, 1)]
    assert validation == [[0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9]]


def test_shared_rows_hold_the_split_and_the_exact_bytes(session, stage_of_13, tmp_path):
    examples, reader = stage_examples(session.warehouse, session.stages, "@tex/train", "folder")
    split = split_by_content(examples, 0.2, 0)
    write_rows(tmp_path / ROWS_FILE, split.train, split.val, reader)
    shared = SharedRowsReader(tmp_path / ROWS_FILE, reader.description)
    try:
        train, val = shared.split()
        assert [(e.name, e.label, e.sha256) for e in train] == [(e.name, e.label, e.sha256) for e in split.train]
        assert [e.name for e in val] == [e.name for e in split.val] and len(train) == 11 and len(val) == 2
        picked = [train[4], val[1], train[0]]
        assert shared.read([e.key for e in picked]) == [stage_of_13.read_bytes(e.name) for e in picked]
    finally:
        shared.close()


def test_session_train_refuses_to_be_one_of_several_torchrun_ranks(session, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="only rank 0 may open the warehouse; run `sightql train ...` under torchrun"):
        session.train("tex", "@tex/train", label="folder", progress=False)
    assert session.sql("SELECT count(*) AS n FROM training_runs").to_pylist() == [{"n": 0}]


@pytest.mark.slow
def test_torchrun_two_ranks_train_one_run_and_register_a_model_sql_can_call(warehouse, session, stage_of_13):
    session.close()
    result = _torchrun(warehouse, *TRAIN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("registered tex@v1") == 1  # rank 0 reports for the job

    with sightql.connect(warehouse) as again:
        (run,) = again.sql("SELECT * FROM training_runs").to_pylist()
        assert run["status"] == "completed" and run["registered_version"] == "tex@v1" and run["error"] is None
        log = again.sql("SELECT * FROM training_log WHERE run_id = ? ORDER BY epoch", [run["run_id"]]).to_pylist()
        assert [r["epoch"] for r in log] == [0, 1, 2]  # epoch 0, the probe rank 0 ran before the plan, logged once
        assert run["probe_val_acc"] == log[0]["val_acc"] and run["best_val_acc"] == log[run["best_epoch"]]["val_acc"]
        assert all(0 <= r["train_acc"] <= 1 and 0 <= r["val_acc"] <= 1 and r["images_per_s"] > 0 for r in log)
        extra = json.loads(run["params"])["extra"]
        assert (extra["train_images"], extra["val_images"]) == (11, 2)
        assert extra["distributed"]["world_size"] == 2 and extra["distributed"]["backend"] == "gloo"
        params = json.loads(run["params"])  # lr='auto' and the resize mode were settled on rank 0, before the plan
        assert params["lr"] == extra["chosen"]["lr"]["value"] and params["resize"] == "squash"
        shares = extra["distributed"]["train_images_per_rank"]
        assert sorted(shares) == ["1", "2"]
        for share in shares.values():  # each rank saw its half; together every training row exactly once
            assert sum(share) == extra["train_images"] and sorted(share) == [5, 6]
        (evaluation,) = again.sql("SELECT dataset, report FROM training_evaluations").to_pylist()
        assert evaluation["dataset"] == "validation" and json.loads(evaluation["report"])["images"] == 2

        rows = again.sql(
            "SELECT classify('tex', stage_file('@tex', relative_path)) AS c FROM directory('@tex/train')"
        ).to_pylist()
        assert len(rows) == 13 and all(r["c"]["label"] in ("local", "nominal") and r["c"]["error"] is None for r in rows)
    assert not list((warehouse / "training").rglob(ROWS_FILE))  # the rows copied for rank 1 are gone


def _seed_putting_in_rank_1_shard(session, name: str) -> int:
    """A seed whose split trains on ``name`` and whose first epoch gives it to rank 1."""
    examples, _ = stage_examples(session.warehouse, session.stages, "@tex/train", "folder")
    for seed in range(50):
        train = [e.name for e in split_by_content(examples, 0.2, seed).train]
        if name in train:
            sampler = shard_sampler(train, 1, 2, shuffle=True, seed=seed)
            sampler.set_epoch(1)
            if train.index(name) in list(sampler):
                return seed
    raise AssertionError(f"no seed below 50 gives {name} to rank 1")


@pytest.mark.slow
def test_a_failing_rank_fails_the_run_on_every_rank(warehouse, session, stage_of_13):
    good = stage_of_13.read_bytes(stage_of_13.list("train/local")[0].relative_path)
    stage_of_13.write_bytes("train/local/truncated.jpg", good[: len(good) // 3])  # header fine, pixels missing
    seed = _seed_putting_in_rank_1_shard(session, "train/local/truncated.jpg")
    session.close()
    # Without the probe: rank 0's feature pass over every row would meet the bad image first, on rank 0.
    result = _torchrun(warehouse, *TRAIN, "--seed", str(seed), "--no-probe")
    assert result.returncode != 0
    assert "error: rank 1 failed: image train/local/truncated.jpg" in result.stderr  # rank 0, naming rank 1
    with sightql.connect(warehouse) as again:
        (run,) = again.sql("SELECT status, error FROM training_runs").to_pylist()
        assert run["status"] == "failed" and run["error"].startswith("rank 1 failed: image train/local/truncated.jpg")
        assert "remove or replace it" in run["error"] and again.registry.model_names() == []
