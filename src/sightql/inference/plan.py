"""A predict run's plan, and how its rows are read in chunks (tables and stages).

Shared by both runners: the local runner reads chunks in a background thread; Dask workers
read their own key ranges (Parquet files the driver exports per range, or staged files).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from sightql.errors import SightQLError
from sightql.inference.pipeline import Chunk, PredictOptions
from sightql.inference.source import Params, StageSource, TableSource, Target
from sightql.inference.spec import ModelSpec


@dataclass
class PredictPlan:
    con: Any  # the driver's DuckDB connection (cursors are taken from it)
    spec: ModelSpec
    source: TableSource | StageSource
    target: Target
    options: PredictOptions
    where: str | None
    params: Params
    recompute: bool
    chunk_rows: int
    on_skipped: Callable[[int], None] = field(default=lambda n: None)
    # Stage sources: the paths due (after ``where``) and the hashes of current predictions by this model version.
    stage_paths: list[str] = field(default_factory=list)
    stage_known: dict[str, str] = field(default_factory=dict)

    def due_table_query(self, **kwargs: Any) -> tuple[str, Any]:
        assert isinstance(self.source, TableSource)
        return self.source.due_query(
            self.params, self.target, self.where, self.spec.model_version, self.recompute, self.options.top_k, **kwargs
        )


# ---- tables -----------------------------------------------------------------------
def table_chunks(plan: PredictPlan) -> Iterator[Chunk]:
    """Due rows of a table, one key range (``chunk_rows`` rows) at a time; never the whole table.

    Not one streaming query: DuckDB runs a streamed scan ahead of a slow consumer and keeps the
    image pages it has read in order-preserving buffers, which overran a 256 MB memory limit on a
    3.5 GB table. A query per key range holds at most one range's images.
    """
    for key_range in table_key_ranges(plan):
        rows = table_range_rows(plan, key_range)
        if rows.num_rows:
            yield Chunk(rows.column("key").combine_chunks(), rows.column("image").combine_chunks())


def table_key_ranges(plan: PredictPlan) -> list[tuple[Any, Any]]:
    """(first key, last key) of each run of ``chunk_rows`` due rows, in key order; only keys are read."""
    sql, params = plan.due_table_query(columns="key", ordered=True)
    cursor = plan.con.cursor()
    ranges: list[tuple[Any, Any]] = []
    try:
        reader = cursor.sql(sql, params=params).to_arrow_reader(plan.chunk_rows)
        for batch in reader:
            if batch.num_rows:
                keys = batch.column(0)
                ranges.append((keys[0].as_py(), keys[len(keys) - 1].as_py()))
    finally:
        cursor.close()
    return ranges


def table_range_rows(plan: PredictPlan, key_range: tuple[Any, Any]) -> pa.Table:
    sql, params = plan.due_table_query(key_range=key_range)
    cursor = plan.con.cursor()
    try:
        return cursor.sql(sql, params=params).to_arrow_table()
    finally:
        cursor.close()


# ---- stages -----------------------------------------------------------------------
_io_pool: ThreadPoolExecutor | None = None


def _reader_pool() -> ThreadPoolExecutor:
    global _io_pool
    if _io_pool is None:
        _io_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sightql-stage-read")
    return _io_pool


def stage_path_chunks(plan: PredictPlan) -> Iterator[list[str]]:
    paths = plan.stage_paths
    for start in range(0, len(paths), plan.chunk_rows):
        yield paths[start : start + plan.chunk_rows]


def read_stage_chunk(stage_name: str, url: str, paths: list[str], known: dict[str, str]) -> tuple[Chunk, int]:
    """Read staged files (in parallel), drop those whose bytes match their current prediction.

    Returns the chunk to predict and how many files were skipped as unchanged.
    """
    from sightql.stages.stage import Stage

    stage = Stage(stage_name, url)

    def read(path: str) -> tuple[bytes | None, str | None]:
        try:
            return stage.read_bytes(path), None
        except SightQLError as exc:
            return None, str(exc)
        except OSError as exc:
            return None, f"cannot read @{stage_name}/{path}: {exc}"

    keys, images, hashes, errors = [], [], [], []
    skipped = 0
    for path, (data, error) in zip(paths, _reader_pool().map(read, paths)):
        sha = hashlib.sha256(data).hexdigest() if data is not None else None
        if sha is not None and known.get(path) == sha:
            skipped += 1
            continue
        keys.append(path)
        images.append(data)
        hashes.append(sha)
        errors.append(error)
    return Chunk(pa.array(keys, pa.string()), images, hashes, errors), skipped


def stage_chunks(plan: PredictPlan) -> Iterator[Chunk]:
    assert isinstance(plan.source, StageSource)
    for paths in stage_path_chunks(plan):
        chunk, skipped = read_stage_chunk(plan.source.name, plan.source.url, paths, plan.stage_known)
        if skipped:
            plan.on_skipped(skipped)
        if len(chunk):
            yield chunk
