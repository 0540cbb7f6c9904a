"""Write one chunk of predictions in ONE transaction, keyed by the source row key.

Each run registers its chunk under its own unique name (``_sightql_predictions_<run id>``),
so concurrent runs never share a staging table. Into the source table: ``UPDATE ... FROM``;
into a separate table: ``INSERT ... ON CONFLICT (key) DO UPDATE``. A crash loses at most the
chunk being written; a key can never hold two predictions.

Each chunk's write takes a cursor of its own for that write only: inside a job's
``warehouse.released()`` the file is open just while the chunk commits, so other processes
(the API, the app, ``sightql sql``, a second job) use the warehouse between chunks.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from contextlib import nullcontext

import pyarrow as pa

from sightql.inference.source import Target
from sightql.sql.identifiers import quote_ident
from sightql.sql.warehouse import Warehouse

# Called as on_write('before-commit', n) inside the n-th chunk's open transaction and
# on_write('after-commit', n) once it is committed (a crash test kills the process there).
WriteHook = Callable[[str, int], None]


class ResultWriter:
    def __init__(
        self, warehouse: Warehouse, target: Target, model_version: str, lock: threading.Lock | None = None,
        on_write: WriteHook | None = None, statement: Callable[[str], str] | None = None,
    ):
        self._warehouse = warehouse  # each write takes a short-lived cursor of its own
        self._lock = lock  # shared with the reader (see PredictPlan.db_lock)
        self.target = target
        self.model_version = model_version
        self.staging = f"_sightql_predictions_{uuid.uuid4().hex[:16]}"
        self.chunks_written = 0
        self.rows_written = 0
        self.errors_written = 0
        self._on_write = on_write
        # ``statement(staging table)``: another chunk write than predict's outputs (image search writes vectors);
        # it binds the model version as its one parameter, and the chunk has a ``prediction_error`` column.
        self._sql = statement(self.staging) if statement is not None else self._statement()

    def _statement(self) -> str:
        """The chunk's write: each output this run writes (the target's columns, see
        :mod:`sightql.inference.outputs`), cast to its column's type by the assignment."""
        target, key = self.target, quote_ident(self.target.key)
        written = [(quote_ident(column), output.value_sql("r", sql_type)) for output, column, sql_type in target.columns]
        if target.same_as_source:
            sets = ", ".join(f"{column} = {value}" for column, value in written)
            return f"UPDATE {target.quoted} SET {sets} FROM {self.staging} r WHERE {target.quoted}.{key} = r.key"
        columns = ", ".join(column for column, _ in written)
        updates = ", ".join(f"{column} = excluded.{column}" for column, _ in written)
        return (
            f"INSERT INTO {target.quoted} ({key}, {columns}) "
            f"SELECT r.key, {', '.join(value for _, value in written)} FROM {self.staging} r "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
        )

    def write(self, results: pa.Table) -> None:
        if results.num_rows == 0:
            return
        with self._warehouse.cursor() as cursor, self._lock or nullcontext():
            cursor.register(self.staging, results)
            try:
                cursor.execute("BEGIN TRANSACTION")
                try:
                    cursor.execute(self._sql, [self.model_version])  # model_version, always written
                    if self._on_write is not None:
                        self._on_write("before-commit", self.chunks_written + 1)
                    cursor.execute("COMMIT")
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
            finally:
                cursor.unregister(self.staging)
        self.chunks_written += 1
        self.rows_written += results.num_rows
        self.errors_written += results.num_rows - results.column("prediction_error").null_count
        if self._on_write is not None:
            self._on_write("after-commit", self.chunks_written)
