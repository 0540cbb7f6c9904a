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
KEYS_PER_QUERY = 512  # well under DuckDB's index_scan_max_count (2,048), so reads go through the index


def table_chunks(plan: PredictPlan) -> Iterator[Chunk]:
    """Due rows of a table, one run of ``chunk_rows`` keys at a time; never the whole table.

    Not one streaming query over the images: DuckDB scans a BLOB column a vector (2,048 rows) at
    a time, so a scan of large images overruns a 256 MB memory limit. Keys are read first (only
    keys), then each run's images are fetched by key through the primary-key index.
    """
    for keys in table_key_runs(plan):
        chunk = table_rows_chunk(plan, keys)
        if chunk is not None:
            yield chunk


def table_key_runs(plan: PredictPlan) -> Iterator[list[Any]]:
    """The due rows' keys, in key order, in runs of ``chunk_rows``; only the key column is read."""
    sql, params = plan.due_table_query(columns="key", ordered=True)
    cursor = plan.con.cursor()
    try:
        reader = cursor.sql(sql, params=params).to_arrow_reader(plan.chunk_rows)
        pending: list[Any] = []
        for batch in reader:
            pending.extend(batch.column(0).to_pylist())
            while len(pending) >= plan.chunk_rows:
                yield pending[: plan.chunk_rows]
                pending = pending[plan.chunk_rows :]
        if pending:
            yield pending
    finally:
        cursor.close()


def table_rows(plan: PredictPlan, keys: list[Any]) -> pa.Table:
    """The due rows among ``keys``: key, image (and known_sha256 for a table without a sha256 column)."""
    parts = []
    cursor = plan.con.cursor()
    try:
        for start in range(0, len(keys), KEYS_PER_QUERY):
            sql, params = plan.due_table_query(keys=keys[start : start + KEYS_PER_QUERY])
            parts.append(cursor.sql(sql, params=params).to_arrow_table())
    finally:
        cursor.close()
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def table_rows_chunk(plan: PredictPlan, keys: list[Any]) -> Chunk | None:
    """One run's due rows as a chunk. A table without a sha256 column has every row read, hashed
    here, and dropped when its bytes match its current prediction (never ``sha256(image)`` over
    the whole table in SQL, which would scan every image)."""
    rows = table_rows(plan, keys)
    if rows.num_rows == 0:
        return None
    keys_array, images = rows.column("key").combine_chunks(), rows.column("image").combine_chunks()
    if "known_sha256" not in rows.column_names:
        return Chunk(keys_array, images)
    known = rows.column("known_sha256").to_pylist()
    keep, hashes = [], []
    for index, current in enumerate(known):
        data = images[index].as_py()
        sha = hashlib.sha256(data).hexdigest() if data is not None else None
        if current is not None and (sha or "") == current:
            continue
        keep.append(index)
        hashes.append(sha)
    if len(keep) < len(known):
        plan.on_skipped(len(known) - len(keep))
    if not keep:
        return None
    taken = pa.array(keep, pa.int64())
    return Chunk(keys_array.take(taken), images.take(taken), hashes)


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
