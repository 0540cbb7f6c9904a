"""Keep an index in step with its table: embed the rows that are due, drop the keys that are gone.

Predict's machinery decides and reads what is due (:mod:`sightql.inference.plan`, the index table as its
target): a row is due unless the index holds its vector (or its error) by this model version from the
bytes the row holds now (its sha256; a FILE row's identity; a path's file). The due rows are read in runs
by row id in a background thread, decoded beside the model by the one engine, and each chunk's vectors
are written in ONE transaction keyed by the row key (``INSERT ... ON CONFLICT DO UPDATE``), so a refresh
killed at any point loses at most the chunk being written and a rerun finishes the job, duplicating
nothing. Keys no longer in the table are then deleted from the index in one statement.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sightql.engine import RowResult
from sightql.inference.path_rows import path_base
from sightql.inference.pipeline import PredictOptions, stream_rows
from sightql.inference.plan import PredictPlan, table_chunks
from sightql.inference.runners.local import prefetch
from sightql.inference.source import Params, TableSource, resolve_table
from sightql.inference.writeback import ResultWriter, WriteHook
from sightql.registry.specs import ModelSpec
from sightql.search.catalog import VECTOR, IndexRecord, mark_refreshed
from sightql.search.embedder import IndexModel
from sightql.sql.identifiers import quote_ident
from sightql.sql.warehouse import Warehouse
from sightql.sql.write_budget import WriteBudget
from sightql.stages.catalog import StageCatalog

DEFAULT_CHUNK_ROWS = 256


@dataclass
class RefreshReport:
    """What a refresh did: ``embedded`` rows written (errors included), ``deleted`` keys gone from the table,
    ``skipped`` rows already current."""

    table: str
    model_version: str
    embedded: int
    errors: int
    deleted: int
    skipped: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (f"index of {self.table}: embedded {self.embedded} row(s) ({self.errors} error row(s)), deleted "
                f"{self.deleted}, {self.skipped} already current, with {self.model_version} in {self.seconds:.1f} s")


def source_of(warehouse: Warehouse, stages: StageCatalog, table: str, image: str) -> TableSource:
    """The table as predict reads it: its image column (BLOB, FILE values or '@stage/path' values) and row key."""
    with warehouse.cursor() as cursor:
        return resolve_table(cursor, table, image, path_base(stages, None))


class VectorWriter:
    """One chunk's vectors in one transaction, keyed by the row key (predict's :class:`ResultWriter`, writing
    vectors into the index table instead of labels)."""

    def __init__(self, warehouse: Warehouse, record: IndexRecord, on_write: WriteHook | None = None,
                 lock: threading.Lock | None = None):
        self._record = record
        key = quote_ident(record.key)

        def statement(staging: str) -> str:
            return (
                f"INSERT INTO {record.quoted_index} ({key}, {VECTOR}, model_version, embed_error, source_sha256, "
                f"embedded_at) SELECT r.key, r.vector::FLOAT[{int(record.dimension)}], ?, r.prediction_error, r.sha256, "
                f"now() FROM {staging} r ON CONFLICT ({key}) DO UPDATE SET {VECTOR} = excluded.{VECTOR}, "
                "model_version = excluded.model_version, embed_error = excluded.embed_error, "
                "source_sha256 = excluded.source_sha256, embedded_at = excluded.embedded_at"
            )

        self._writer = ResultWriter(warehouse, record.target(), record.model_version, lock, on_write, statement)

    @property
    def rows(self) -> int:
        return self._writer.rows_written

    @property
    def errors(self) -> int:
        return self._writer.errors_written

    def write(self, keys: pa.Array, rows: Sequence[RowResult], hashes: Sequence[str | None]) -> None:
        vectors, errors = [], []
        for result in rows:
            vector = None if result.output is None else np.asarray(result.output, np.float32).reshape(-1)
            if vector is not None and vector.shape[0] != self._record.dimension:
                vector, error = None, f"the model gave {vector.shape[0]} numbers, the index holds {self._record.dimension}"
            else:
                error = result.error
            vectors.append(vector)
            errors.append(error)
        self._writer.write(pa.table({
            "key": keys, "vector": pa.array(vectors, pa.list_(pa.float32())),
            "prediction_error": pa.array(errors, pa.string()), "sha256": pa.array(list(hashes), pa.string()),
        }))


def refresh(
    warehouse: Warehouse, stages: StageCatalog, record: IndexRecord, model: IndexModel, *,
    chunk_rows: int | None = None, on_write: WriteHook | None = None,
) -> RefreshReport:
    """Embed the due rows of ``record.table`` into its index and delete the keys gone from the table."""
    started = time.perf_counter()
    source = source_of(warehouse, stages, record.table, record.image)
    settings = warehouse.settings
    options = PredictOptions(batch_size=settings.batch_size, limits=warehouse.limits,
                             decode_threads=settings.decode_threads, read_budget_bytes=settings.read_budget_bytes)
    spec = ModelSpec(model.model_version, str(warehouse.home), warehouse.device)
    plan = PredictPlan(warehouse, spec, source, record.target(), options, None, Params(None), False,
                       chunk_rows or DEFAULT_CHUNK_ROWS, stages=stages)
    if not source.in_stages:  # only BLOB runs carry bytes through DuckDB
        plan.run_bytes = WriteBudget.of(warehouse.connection(), settings).batch_bytes
    with warehouse.cursor() as cursor:
        total = cursor.execute(f"SELECT count(*) FROM {source.quoted}").fetchall()[0][0]
    writer = VectorWriter(warehouse, record, on_write, plan.db_lock)
    with warehouse.released():
        stream = stream_rows(model.predictor, prefetch(table_chunks(plan), depth=1), options)
        try:
            for chunk, rows, hashes in stream:
                writer.write(chunk.keys, rows, hashes)
        finally:
            stream.close()
    with warehouse.transaction() as cursor:
        key = quote_ident(record.key)
        deleted = cursor.execute(
            f"DELETE FROM {record.quoted_index} i WHERE NOT EXISTS "
            f"(SELECT 1 FROM {source.quoted} s WHERE s.{key} = i.{key})"
        ).fetchall()[0][0]
        mark_refreshed(cursor, record)
    return RefreshReport(record.table, record.model_version, writer.rows, writer.errors, int(deleted),
                         max(0, int(total) - writer.rows), time.perf_counter() - started)
