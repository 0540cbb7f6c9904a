"""Write one chunk of predictions in ONE transaction, keyed by the source row key.

Each run registers its chunk under its own unique name (``_sightql_predictions_<run id>``),
so concurrent runs never share a staging table. Into the source table: ``UPDATE ... FROM``;
into a separate table: ``INSERT ... ON CONFLICT (key) DO UPDATE``. A crash loses at most the
chunk being written; a key can never hold two predictions.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from contextlib import nullcontext
from typing import Any

import pyarrow as pa

from sightql.inference.source import Target
from sightql.sql.identifiers import quote_ident

# Test hook: 'before-commit:N' or 'after-commit:N' pauses the process at that point of the
# N-th chunk write (and says so on stderr), so a test can kill -9 it there.
PAUSE_ENV = "SIGHTQL_PREDICT_TEST_PAUSE"


class ResultWriter:
    def __init__(self, con: Any, target: Target, model_version: str, lock: threading.Lock | None = None):
        self._cursor = con.cursor()
        self._lock = lock  # shared with the reader (see PredictPlan.db_lock)
        self.target = target
        self.model_version = model_version
        self.staging = f"_sightql_predictions_{uuid.uuid4().hex[:16]}"
        self.chunks_written = 0
        self.rows_written = 0
        self.errors_written = 0
        self._pause = _parse_pause(os.environ.get(PAUSE_ENV))
        self._sql = self._statement()

    def _statement(self) -> str:
        target, key = self.target, quote_ident(self.target.key)
        values = ["predicted_label", "confidence", "prediction_error", "predicted_sha256"]
        if target.has_top_k:
            values.append("top_k")
        if target.same_as_source:
            sets = ", ".join(f"{c} = r.{c}" for c in values)
            return (
                f"UPDATE {target.quoted} SET {sets}, model_version = ?, predicted_at = now() "
                f"FROM {self.staging} r WHERE {target.quoted}.{key} = r.key"
            )
        columns = [key, *values, "model_version", "predicted_at"]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
        return (
            f"INSERT INTO {target.quoted} ({', '.join(columns)}) "
            f"SELECT key, {', '.join(values)}, ?, now() FROM {self.staging} "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
        )

    def write(self, results: pa.Table) -> None:
        if results.num_rows == 0:
            return
        cursor = self._cursor
        with self._lock or nullcontext():
            cursor.register(self.staging, results)
            try:
                cursor.execute("BEGIN TRANSACTION")
                try:
                    cursor.execute(self._sql, [self.model_version])
                    self._maybe_pause("before-commit")
                    cursor.execute("COMMIT")
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
            finally:
                cursor.unregister(self.staging)
        self.chunks_written += 1
        self.rows_written += results.num_rows
        self.errors_written += results.num_rows - results.column("prediction_error").null_count
        self._maybe_pause("after-commit")

    def _maybe_pause(self, point: str) -> None:
        if self._pause == (point, self.chunks_written + (point == "before-commit")):
            print(f"sightql-test: paused {point} of chunk {self._pause[1]}", file=sys.stderr, flush=True)
            time.sleep(3600)

    def close(self) -> None:
        self._cursor.close()


def _parse_pause(raw: str | None) -> tuple[str, int] | None:
    if not raw:
        return None
    point, _, count = raw.partition(":")
    return point, int(count)
