"""Batch predict: stream a table or a stage through a model and write predictions back.

Resumable and incremental: every chunk is written in one transaction keyed by the row key,
and rows whose current prediction came from the same model version and the same image bytes
are skipped, so a rerun after a crash (or after new rows arrive) does only what is left.

No long lock: the run is planned on the session's connection (a few short queries), then the
runner runs inside ``warehouse.released()``: each page of the plan, each chunk's read of keys,
FILE values or BLOB rows, and each chunk's write opens the DuckDB file for that step only, and
images are read from stages and run through the model with the file closed. Other processes
(the API, the app, ``sightql sql``, a second job) take their turns between those steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import duckdb

from sightql.errors import ConfigError, MemoryLimitError, SightQLError
from sightql.inference.outputs import ColumnsArg
from sightql.inference.path_rows import path_base
from sightql.inference.pipeline import PredictOptions
from sightql.inference.plan import PredictPlan
from sightql.inference.progress import progress_bar
from sightql.inference.runners import Runner, RunnerName, resolve_runner
from sightql.inference.source import (
    Params, StageSource, TableSource, UserParams, current_condition, prepare_target, resolve_stage, resolve_table,
)
from sightql.inference.writeback import ResultWriter, WriteHook
from sightql.models.device import resolve_device
from sightql.registry import Registry
from sightql.registry.specs import card_of, check_classifier
from sightql.sql.duckdb_errors import clean_duckdb_error
from sightql.sql.identifiers import quote_ident
from sightql.sql.warehouse import Warehouse
from sightql.sql.write_budget import WriteBudget
from sightql.stages.catalog import StageCatalog

DEFAULT_CHUNK_ROWS = 256
GPU_BATCH_SIZE = 512  # two of the GPU predictor's largest model batches (models.loader.GPU_MAX_BATCH)


@dataclass
class PredictReport:
    """What a run did. ``predicted`` counts rows written (errors included); ``skipped`` rows were current."""

    source: str
    into: str
    model_version: str
    runner: str
    due: int
    predicted: int
    errors: int
    skipped: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.predicted / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"predicted {self.predicted} row(s) of {self.source} into {self.into} with {self.model_version} "
            f"({self.errors} error row(s), {self.skipped} skipped as already current) "
            f"in {self.seconds:.1f} s, {self.images_per_second:.1f} img/s, runner {self.runner}"
        )


def predict(
    warehouse: Warehouse,
    registry: Registry,
    stages: StageCatalog,
    model: str,
    source: str,
    *,
    image: str = "image",
    stage: str | None = None,
    columns: ColumnsArg = None,
    key: str | None = None,
    into: str | None = None,
    where: str | None = None,
    params: UserParams = None,
    top_k: int = 0,
    recompute: bool = False,
    batch_size: int | None = None,
    chunk_rows: int | None = None,
    runner: RunnerName | Runner = "local",
    device: str | None = None,
    progress: bool | None = None,
    on_write: WriteHook | None = None,
) -> PredictReport:
    """Arguments as in docs/batch.md; ``on_write(point, chunk)`` is told of each chunk's commit (for crash tests)."""
    started = time.perf_counter()
    _check_arguments(source, top_k, batch_size, chunk_rows, where)
    _check_names(source, image, stage, key)
    chosen = resolve_runner(runner, warehouse.settings)
    spec = registry.spec(model, device)
    # For the bundled model this loads it here, so it is exported once, not by every Dask worker at once.
    check_classifier(card_of(spec), spec.model_version)
    base = path_base(stages, stage)  # an unknown stage is refused before the table is looked at
    with warehouse.cursor() as cursor:
        src = resolve_stage(stages, source) if source.startswith("@") else resolve_table(cursor, source, image, base, key)
        target = prepare_target(cursor, src, into, top_k, columns)
    settings = warehouse.settings
    options = PredictOptions(
        batch_size=batch_size or (GPU_BATCH_SIZE if resolve_device(spec.device).startswith("cuda") else settings.batch_size),
        top_k=top_k,
        limits=warehouse.limits,
        decode_threads=settings.decode_threads,
        read_budget_bytes=settings.read_budget_bytes,
    )
    plan = PredictPlan(warehouse, spec, src, target, options, where, Params(params), recompute,
                       chunk_rows or DEFAULT_CHUNK_ROWS, stages=stages)
    if isinstance(src, TableSource) and not src.in_stages:  # only BLOB runs carry bytes through DuckDB
        plan.run_bytes = WriteBudget.of(warehouse.connection(), settings).batch_bytes
    try:
        total, due = _count(warehouse, plan)
    except duckdb.Error as exc:
        raise _sql_error(exc, where) from None
    skipped = [total - due]
    writer = ResultWriter(warehouse, target, spec.model_version, plan.db_lock, on_write)
    with warehouse.released():
        try:
            with progress_bar(due, f"{spec.model_version} on {src.label}", progress) as advance:
                def on_skipped(rows: int) -> None:
                    skipped[0] += rows
                    advance(rows)

                plan.on_skipped = on_skipped
                stream = chosen.run(plan)
                try:
                    for results in stream:
                        writer.write(results)
                        advance(results.num_rows)
                finally:
                    getattr(stream, "close", lambda: None)()  # stops readers and clusters on error
        except duckdb.Error as exc:
            raise _sql_error(exc, where) from None
    # Rows another process predicted while this one ran were no longer due when their page was
    # read: they count as skipped (rows added meanwhile and written make this no larger).
    skipped[0] = max(skipped[0], total - writer.rows_written)
    return PredictReport(
        src.label, target.table, spec.model_version, chosen.name, due, writer.rows_written, writer.errors_written,
        skipped[0], time.perf_counter() - started,
    )


def _count(warehouse: Warehouse, plan: PredictPlan) -> tuple[int, int]:
    """(rows matching where, rows due); for a stage, also lists the paths and current predictions."""
    with warehouse.cursor() as cursor:
        if isinstance(plan.source, StageSource):
            sql, values = plan.source.paths_query(plan.params, plan.where)
            plan.stage_paths = [row[0] for row in cursor.execute(sql, values).fetchall()]
            if not plan.recompute:
                plan.stage_known = _current_hashes(cursor, plan)
            return len(plan.stage_paths), len(plan.stage_paths)
        total_sql, total_values = plan.source.count_query(plan.params, plan.target, plan.where)
        due_sql, due_values = plan.due_table_query(count=True)
        total = cursor.execute(total_sql, total_values).fetchone()[0]
        due = cursor.execute(due_sql, due_values).fetchone()[0]
        return int(total), int(due)


def _current_hashes(cursor: Any, plan: PredictPlan) -> dict[str, str]:
    target = plan.target
    condition, values = current_condition(target, "t", plan.spec.model_version, plan.options.top_k)
    sha = target.column("sha256")
    sql, values = Params(None).build([
        (f"SELECT t.{quote_ident(target.key)}, t.{sha} FROM {target.quoted} t WHERE {condition} AND t.{sha} IS NOT NULL",
         values),
    ])
    return dict(cursor.execute(sql, values).fetchall())


def _sql_error(exc: duckdb.Error, where: str | None) -> SightQLError:
    """DuckDB's message without its caret drawing; a failing where filter is named as the likely cause."""
    cleaned = clean_duckdb_error(exc)
    if isinstance(cleaned, MemoryLimitError):
        return cleaned
    text = str(cleaned).replace("\n", " ")
    if where:
        return ConfigError(f"the query failed: {text}; check where={where!r} and its params")
    return SightQLError(f"the query failed: {text}")


def _check_names(source: str, image: Any, stage: Any, key: Any) -> None:
    for name, value in (("image", image), ("stage", stage), ("key", key)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{name} must be a name, not {value!r}")
    if source.startswith("@") and (stage is not None or key is not None):
        raise ConfigError("stage= and key= are for a table source; a stage source is keyed by relative_path")


def _check_arguments(source: Any, top_k: Any, batch_size: Any, chunk_rows: Any, where: Any) -> None:
    if not isinstance(source, str) or not source:
        raise ConfigError(f"source must be a table name or '@stage/prefix', not {source!r}")
    if not isinstance(top_k, int) or top_k < 0:
        raise ConfigError(f"top_k must be 0 (no list) or a positive number of labels, not {top_k!r}")
    for name, value in (("batch_size", batch_size), ("chunk_rows", chunk_rows)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be a positive whole number, not {value!r}")
    if where is not None and (not isinstance(where, str) or not where.strip()):
        raise ConfigError("where must be SQL text such as \"relative_path LIKE ?\" with values in params=")
