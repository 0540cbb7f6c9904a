"""The training catalog: ``training_runs``, ``training_log``, ``training_checkpoints``, ``training_evaluations``.

Every write is one short statement (a checkpoint's record with its predecessor's removal: one
transaction) on a short-lived cursor of the warehouse's, so a row is durable as soon as the epoch
ends, and what a crashed run wrote stays readable.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from sightql.errors import SightQLError
from sightql.sql.warehouse import Warehouse


STATUSES = ("running", "completed", "failed", "interrupted")
LOG_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_run_id() -> str:
    return f"run-{_now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class RunStore:
    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse

    def _arrow(self, query: str, params: list[Any]) -> pa.Table:
        with self.warehouse.cursor() as cursor:
            return cursor.sql(query, params=params).to_arrow_table()

    # ---- runs ------------------------------------------------------------------
    def start(self, run_id: str, name: str, params: dict[str, Any]) -> None:
        self.warehouse.rows(
            "INSERT INTO training_runs (run_id, name, status, params, started_at) VALUES (?, ?, 'running', ?, ?)",
            [run_id, name, json.dumps(params, sort_keys=True, default=str), _now()],
        )

    def update_params(self, run_id: str, params: dict[str, Any]) -> None:
        self.warehouse.rows(
            "UPDATE training_runs SET params = ? WHERE run_id = ?", [json.dumps(params, sort_keys=True, default=str), run_id]
        )

    def mark_running(self, run_id: str) -> None:
        self.warehouse.rows(
            "UPDATE training_runs SET status = 'running', error = NULL, finished_at = NULL WHERE run_id = ?", [run_id]
        )

    def finish(self, run_id: str, status: str, error: str | None = None) -> None:
        assert status in STATUSES
        self.warehouse.rows(
            "UPDATE training_runs SET status = ?, error = ?, finished_at = ? WHERE run_id = ?",
            [status, error, _now(), run_id],
        )

    def set_best(self, run_id: str, epoch: int, val_acc: float | None = None) -> None:
        self.warehouse.rows("UPDATE training_runs SET best_epoch = ?, best_val_acc = ? WHERE run_id = ?",
                            [epoch, val_acc, run_id])

    def set_probe(self, run_id: str, val_acc: float, val_loss: float) -> None:
        """Epoch 0's validation figures (the linear probe), kept beside the best epoch's for comparison."""
        self.warehouse.rows("UPDATE training_runs SET probe_val_acc = ?, probe_val_loss = ? WHERE run_id = ?",
                            [val_acc, val_loss, run_id])

    def set_stop_reason(self, run_id: str, reason: str) -> None:
        self.warehouse.rows("UPDATE training_runs SET stop_reason = ? WHERE run_id = ?", [reason, run_id])

    def set_registered(self, run_id: str, ref: str) -> None:
        self.warehouse.rows("UPDATE training_runs SET registered_version = ? WHERE run_id = ?", [ref, run_id])

    def get(self, run_id: str) -> dict[str, Any]:
        table = self._arrow("SELECT * FROM training_runs WHERE run_id = ?", [run_id])
        if table.num_rows == 0:
            raise SightQLError(f"no training run {run_id!r}; list runs with `sightql runs ls`")
        return table.to_pylist()[0]

    def run_that_registered(self, ref: str) -> dict[str, Any] | None:
        rows = self._arrow("SELECT * FROM training_runs WHERE registered_version = ?", [ref]).to_pylist()
        return rows[0] if rows else None

    def list_runs(self) -> pa.Table:
        return self._arrow(
            "SELECT run_id, name, status, started_at, finished_at, best_epoch, registered_version, error "
            "FROM training_runs ORDER BY started_at DESC",
            [],
        )

    # ---- epochs ----------------------------------------------------------------
    def log_epoch(self, run_id: str, row: dict[str, float | int | None]) -> None:
        values = [row.get(c) for c in LOG_COLUMNS]
        columns = ", ".join(LOG_COLUMNS)
        self.warehouse.rows(
            f"INSERT OR REPLACE INTO training_log (run_id, {columns}) VALUES (?, {', '.join('?' for _ in values)})",
            [run_id, *values],
        )

    def epochs(self, run_id: str) -> pa.Table:
        return self._arrow(
            f"SELECT {', '.join(LOG_COLUMNS)} FROM training_log WHERE run_id = ? ORDER BY epoch", [run_id]
        )

    def forget_epochs_after(self, run_id: str, epoch: int) -> None:
        """On resume: epochs past the checkpoint are trained again, so their old rows go."""
        self.warehouse.rows("DELETE FROM training_log WHERE run_id = ? AND epoch > ?", [run_id, epoch])

    # ---- checkpoints -----------------------------------------------------------
    def add_checkpoint(self, run_id: str, epoch: int, path: Path, sha256: str) -> None:
        """Record the checkpoint at ``path`` and forget the run's older one (only the newest is kept)."""
        rel = path.relative_to(self.warehouse.home).as_posix()
        with self.warehouse.transaction() as cursor:
            old = cursor.execute(
                "SELECT epoch, path FROM training_checkpoints WHERE run_id = ? AND epoch <> ?", [run_id, epoch]
            ).fetchall()
            cursor.execute(
                "INSERT OR REPLACE INTO training_checkpoints (run_id, epoch, path, sha256, size_bytes, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [run_id, epoch, rel, sha256, path.stat().st_size, _now()],
            )
            for old_epoch, _ in old:
                cursor.execute("DELETE FROM training_checkpoints WHERE run_id = ? AND epoch = ?", [run_id, old_epoch])
        for _, old_path in old:  # the files go once the catalog no longer names them
            (self.warehouse.home / old_path).unlink(missing_ok=True)

    def last_checkpoint(self, run_id: str) -> tuple[int, Path, str] | None:
        rows = self.warehouse.rows(
            "SELECT epoch, path, sha256 FROM training_checkpoints WHERE run_id = ? ORDER BY epoch DESC LIMIT 1", [run_id]
        )
        if not rows:
            return None
        epoch, rel, sha = rows[0]
        return int(epoch), self.warehouse.home / rel, sha

    # ---- evaluations -----------------------------------------------------------
    def add_evaluation(self, run_id: str, dataset: str, model_version: str | None, report: dict[str, Any]) -> None:
        self.warehouse.rows(
            "INSERT OR REPLACE INTO training_evaluations (run_id, dataset, model_version, accuracy, report, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [run_id, dataset, model_version, report.get("accuracy"), json.dumps(report, sort_keys=True), _now()],
        )

    def evaluations(self, run_id: str) -> list[dict[str, Any]]:
        """A run's evaluation reports: validation, then test."""
        return self._evaluations("run_id", run_id)

    def evaluations_of_version(self, ref: str) -> list[dict[str, Any]]:
        """The evaluation reports (validation, then test) stored when training registered ``ref`` ('name@v3')."""
        return self._evaluations("model_version", ref)

    def _evaluations(self, column: str, value: str) -> list[dict[str, Any]]:
        assert column in ("run_id", "model_version")  # a column name of ours, never user text
        rows = self._arrow(
            f"SELECT run_id, dataset, model_version, accuracy, report FROM training_evaluations "
            f"WHERE {column} = ? ORDER BY dataset DESC",
            [value],
        ).to_pylist()
        for row in rows:
            row["report"] = json.loads(row["report"])
        return rows
