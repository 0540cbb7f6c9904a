"""A predict run's plan, and how its rows are read in chunks (tables and stages).

Shared by both runners: the local runner reads chunks in a background thread; Dask workers
read their own key ranges (Parquet files the driver exports per range, staged files, or the
files a FILE table's values name: :mod:`sightql.inference.file_rows`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from sightql.engine import worker_pool
from sightql.errors import SightQLError
from sightql.inference.file_rows import read_file_rows
from sightql.inference.path_rows import read_path_rows
from sightql.inference.pipeline import Chunk, PredictOptions
from sightql.inference.source import Params, StageSource, TableSource, Target
from sightql.registry.specs import ModelSpec
from sightql.sql.identifiers import quote_ident
from sightql.sql.tables import read_rowids
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.stages.files import STAGE_READERS, FileRef, file_refs
from sightql.stages.stage import Stage


@dataclass
class PredictPlan:
    warehouse: Warehouse  # the driver's warehouse (each reader takes its own cursor)
    spec: ModelSpec
    source: TableSource | StageSource
    target: Target
    options: PredictOptions
    where: str | None
    params: Params
    recompute: bool
    chunk_rows: int
    on_skipped: Callable[[int], None] = field(default=lambda n: None)
    stages: StageCatalog | None = None  # where a FILE table's values point (tables with a file column)
    # Stage sources: the paths due (after ``where``) and the hashes of current predictions by this model version.
    stage_paths: list[str] = field(default_factory=list)
    stage_known: dict[str, str] = field(default_factory=dict)
    # Held while the reader reads images and while the writer writes: DuckDB's memory limit is
    # shared, and a read of ZSTD-compressed images (tables written before sightql disabled ZSTD)
    # holds about two vectors' worth of them, which a concurrent write could push past the limit.
    db_lock: threading.Lock = field(default_factory=threading.Lock)
    # Image bytes one run may read (None: no limit known). DuckDB holds a read's images within its
    # memory limit, so a run of 256 phone photos (870 MB) cannot be read at 256MB: runs start at
    # FIRST_RUN_ROWS rows and then take as many rows as the bytes seen so far say fit. A FILE table's
    # runs hold only FILE values (each file is read where it is decoded, within the process's read
    # budget), so predict sets no run_bytes for it: its runs are ``chunk_rows`` long, full model batches.
    run_bytes: int | None = None
    learned_run_rows: int = 0

    def next_run_rows(self) -> int:
        if self.learned_run_rows:
            return self.learned_run_rows
        return min(self.chunk_rows, FIRST_RUN_ROWS) if self.run_bytes else self.chunk_rows

    def learn_run(self, rows: int, image_bytes: int) -> None:
        """Size the next runs from one run's rows and image bytes."""
        if rows and self.run_bytes:
            per_row = max(1, image_bytes // rows)
            self.learned_run_rows = max(1, min(self.chunk_rows, self.run_bytes // per_row))

    def due_table_query(self, **kwargs: Any) -> tuple[str, Any]:
        assert isinstance(self.source, TableSource)
        return self.source.due_query(
            self.params, self.target, self.where, self.spec.model_version, self.recompute, self.options.top_k, **kwargs
        )


# ---- tables -----------------------------------------------------------------------
FIRST_RUN_ROWS = 8
PLAN_PAGE_ROWS = 4096  # due rows' keys per planning query: a few ms of the warehouse each
KEYS_PER_QUERY = 512  # well under DuckDB's index_scan_max_count (2,048), so reads go through the index


@dataclass(frozen=True)
class RowRun:
    """Due rows of a table, planned together: their row ids (ascending; None where the table hides
    DuckDB's rowid), keys, and for a table without a sha256 column the hash each row's current
    prediction was made from (None: no current prediction)."""

    rowids: list[int | None]
    keys: list[Any]
    known_sha256: list[str | None] | None


def table_chunks(plan: PredictPlan) -> Iterator[Chunk]:
    """Due rows of a table, one run of ``chunk_rows`` rows at a time; never the whole table."""
    for run in table_runs(plan):
        chunk = table_run_chunk(plan, run)
        if chunk is not None:
            yield chunk


def table_runs(plan: PredictPlan) -> Iterator[RowRun]:
    """The due rows in storage (row id) order, in runs of at most ``chunk_rows`` rows and about
    ``run_bytes`` of images (:meth:`PredictPlan.next_run_rows`); only keys and row ids are read.

    Not one streaming query over the images: DuckDB scans a BLOB column a vector (2,048 rows) at
    a time, so a scan of large images overruns a 256 MB memory limit. The plan is made first,
    without images; each run's images are then read by row id (:func:`read_run`).

    Nor one query held open for the whole run: the plan is read a page (:data:`PLAN_PAGE_ROWS`
    rows after the last one read) per short query, so the warehouse is free between pages for
    other processes. A row that stopped being due meanwhile (a second job predicted it) is left out.
    """
    source = plan.source
    assert isinstance(source, TableSource)
    page_rows = max(PLAN_PAGE_ROWS, plan.chunk_rows)
    after: Any = None
    rowids: list[Any] = []
    keys: list[Any] = []
    known: list[Any] = []
    with_known = False
    while True:
        sql, params = plan.due_table_query(after=after, limit=page_rows)
        with plan.warehouse.cursor() as cursor:
            page = cursor.sql(sql, params=params).to_arrow_table()
        with_known = "known_sha256" in page.schema.names
        page_rowids, page_keys = page.column("rowid").to_pylist(), page.column("key").to_pylist()
        rowids.extend(page_rowids)
        keys.extend(page_keys)
        if with_known:
            known.extend(page.column("known_sha256").to_pylist())
        while len(keys) >= plan.next_run_rows():
            size = plan.next_run_rows()
            yield RowRun(rowids[:size], keys[:size], known[:size] if with_known else None)
            rowids, keys, known = rowids[size:], keys[size:], known[size:]
        if page.num_rows < page_rows:
            break
        after = source.position_of(page_rowids[-1], page_keys[-1])
    if keys:
        yield RowRun(rowids, keys, known if with_known else None)


def read_run(plan: PredictPlan, run: RowRun) -> tuple[pa.Table, int]:
    """The run's rows that still exist with their planned keys: (key, image), and how many are gone.

    Rows are read by row id, one query per run (``rowid BETWEEN first AND last AND rowid IN
    (...)``): DuckDB skips straight to those rows and reads only their images, in storage order.
    Measured on 50,000 rows of 50 KB JPEGs: 6,000 rows/s, where ``key IN (...)`` lists of 256
    keys gave 3,800 (and 150 on ZSTD-compressed images, where each list scanned the whole
    table). Row ids are stable while a run writes its predictions (an UPDATE of other columns
    keeps them); a row whose id no longer holds its planned key (its key was changed, or
    deletes were compacted) is looked up by key instead.
    """
    assert isinstance(plan.source, TableSource)
    source = plan.source
    parts: list[pa.Table] = []
    missing = list(run.keys)
    with plan.warehouse.cursor() as cursor, plan.db_lock:
        rowids = [r for r in run.rowids if r is not None]
        if rowids:
            columns = f"{quote_ident(source.key)} AS key, {quote_ident(source.image)} AS image"
            found = read_rowids(cursor, source.quoted, columns, rowids)
            planned = dict(zip(run.rowids, run.keys))
            keep = [planned.get(rowid) == key for rowid, key in
                    zip(found.column("rowid").to_pylist(), found.column("key").to_pylist())]
            found = found.filter(pa.array(keep, pa.bool_())).select(["key", "image"])
            parts.append(found)
            got = set(found.column("key").to_pylist())
            missing = [key for key in run.keys if key not in got]
        for start in range(0, len(missing), KEYS_PER_QUERY):
            sql, values = source.rows_by_key_query(missing[start : start + KEYS_PER_QUERY])
            parts.append(cursor.sql(sql, params=values).to_arrow_table())
    rows = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    if not source.in_stages:  # FILE values and paths are small: their runs are chunk_rows long (no run_bytes)
        plan.learn_run(rows.num_rows, rows.column("image").nbytes)
    return rows, len(run.keys) - rows.num_rows


def known_of_rows(run: RowRun, keys: list[Any]) -> list[str | None] | None:
    """The run's ``known_sha256`` in the order of ``keys`` (the rows read), or None when the run has none."""
    if run.known_sha256 is None:
        return None
    known = dict(zip(run.keys, run.known_sha256))
    return [known.get(key) for key in keys]


def _rows_still_there(plan: PredictPlan, run: RowRun) -> pa.Table | None:
    """:func:`read_run`, the rows gone since planning counted as skipped; None when none is left."""
    rows, gone = read_run(plan, run)
    if gone:
        plan.on_skipped(gone)
    return rows if rows.num_rows else None


def read_file_run(plan: PredictPlan, run: RowRun) -> tuple[pa.Array, list[FileRef | None], list[str | None] | None] | None:
    """A FILE table's run: the keys, FILE values and known identities of its rows still there (no bytes)."""
    rows = _rows_still_there(plan, run)
    if rows is None:
        return None
    keys = rows.column("key").combine_chunks()
    refs = file_refs(rows.column("image").combine_chunks())
    return keys, refs, known_of_rows(run, keys.to_pylist())


def read_path_run(plan: PredictPlan, run: RowRun) -> tuple[pa.Array, list[str | None], list[str | None] | None] | None:
    """A table of stage paths' run: the keys, paths and known identities of its rows still there (no bytes)."""
    rows = _rows_still_there(plan, run)
    if rows is None:
        return None
    keys = rows.column("key").combine_chunks()
    return keys, rows.column("image").to_pylist(), known_of_rows(run, keys.to_pylist())


def table_run_chunk(plan: PredictPlan, run: RowRun) -> Chunk | None:
    """One run's rows as a chunk. A table without a sha256 column has every row read, hashed
    here, and dropped when its bytes match its current prediction (never ``sha256(image)`` over
    the whole table in SQL, which would scan every image). A FILE or path table's files are
    checked (a stat each) here, in the reading thread, and their bytes read where each row is
    decoded (:mod:`~sightql.inference.file_rows`, :mod:`~sightql.inference.path_rows`)."""
    source = plan.source
    assert isinstance(source, TableSource)
    if source.in_stages:
        assert plan.stages is not None, "a FILE or path table's plan needs the stage catalog"
        if source.paths is not None:
            paths = read_path_run(plan, run)
            chunk, skipped = (None, 0) if paths is None else read_path_rows(
                *paths, source.paths, plan.stages.get, plan.options.read_budget_bytes)
        else:
            files = read_file_run(plan, run)
            chunk, skipped = (None, 0) if files is None else read_file_rows(
                *files, plan.stages.get, plan.options.read_budget_bytes)
        if skipped:
            plan.on_skipped(skipped)
        return chunk if chunk is not None and len(chunk) else None
    rows = _rows_still_there(plan, run)
    if rows is None:
        return None
    keys_array, images = rows.column("key").combine_chunks(), rows.column("image").combine_chunks()
    if run.known_sha256 is None:
        return Chunk(keys_array, images)
    known = known_of_rows(run, keys_array.to_pylist()) or []
    keep, hashes = [], []
    for index, current in enumerate(known):
        data = images[index].as_py()
        sha = hashlib.sha256(data).hexdigest() if data is not None else None
        if current is not None and (sha or "") == current:
            continue
        keep.append(index)
        hashes.append(sha)
    if len(keep) < rows.num_rows:
        plan.on_skipped(rows.num_rows - len(keep))
    if not keep:
        return None
    taken = pa.array(keep, pa.int64())
    return Chunk(keys_array.take(taken), images.take(taken), hashes)


# ---- stages -----------------------------------------------------------------------
def stage_path_chunks(plan: PredictPlan) -> Iterator[list[str]]:
    paths = plan.stage_paths
    for start in range(0, len(paths), plan.chunk_rows):
        yield paths[start : start + plan.chunk_rows]


def read_stage_chunk(
    stage_name: str, url: str, paths: list[str], known: dict[str, str], endpoint_url: str | None = None,
) -> tuple[Chunk, int]:
    """Read staged files (in parallel), drop those whose bytes match their current prediction.

    Returns the chunk to predict and how many files were skipped as unchanged.
    """
    stage = Stage(stage_name, url, endpoint_url)

    def read(path: str) -> tuple[bytes | None, str | None]:
        try:
            return stage.read_bytes(path), None
        except SightQLError as exc:
            return None, str(exc)
        except OSError as exc:
            return None, f"cannot read @{stage_name}/{path}: {exc}"

    keys, images, hashes, errors = [], [], [], []
    skipped = 0
    for path, (data, error) in zip(paths, worker_pool(STAGE_READERS).map(read, paths)):
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
        chunk, skipped = read_stage_chunk(
            plan.source.name, plan.source.url, paths, plan.stage_known, plan.source.endpoint_url
        )
        if skipped:
            plan.on_skipped(skipped)
        if len(chunk):
            yield chunk
