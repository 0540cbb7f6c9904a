"""Loading into a table of references: each file copied into the internal stage, the row naming the copy.

Per file: read its bytes (a few files ahead, so memory is about :data:`READ_AHEAD` x file size),
check the size limit and the header, hash, and copy the bytes to the internal stage under their
SHA-256 (:func:`~sightql.stages.internal.store_image`; bytes already there are not written again).
Every :data:`ROWS_PER_WRITE` files the rows go in with one short transaction. The warehouse is
released for the whole load (``Warehouse.released``), so other processes use it between those
transactions; no image byte ever goes through DuckDB.

A load killed part way keeps every batch committed before it; files it copied for rows it had not
yet written stay in the stage unreferenced (a rerun names them again; nothing removes them yet).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from sightql.engine import worker_pool
from sightql.errors import ImageError, StageError
from sightql.ingest.rows import LoadReport, checked_row, write_rows
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.stages.internal import store_image
from sightql.stages.stage import Stage

READ_AHEAD = 4  # files read, hashed and copied at once (phone photos: 4 x 10 MB in memory at most)
ROWS_PER_WRITE = 64  # rows per transaction: short enough for other processes to take turns between

T = TypeVar("T")
R = TypeVar("R")


def load_by_reference(
    warehouse: Warehouse, stages: StageCatalog, quoted: str, files: list[tuple[str, int, Callable[[], bytes]]],
    report: LoadReport,
) -> None:
    """Copy ``files`` (relative path, size, reader) into the internal stage and write their rows into ``quoted``."""
    with warehouse.released():
        internal = stages.internal()
        pending: list[dict[str, Any]] = []
        for (rel, _, _), outcome in ahead(files, lambda file: _stored_row(file, internal, warehouse), READ_AHEAD):
            if isinstance(outcome, str):
                report.skipped.append((rel, outcome))
                continue
            pending.append(outcome)
            if len(pending) >= ROWS_PER_WRITE:
                write_rows(warehouse, quoted, pending, report, by_reference=True)
                pending = []
        if pending:
            write_rows(warehouse, quoted, pending, report, by_reference=True)


def _stored_row(file: tuple[str, int, Callable[[], bytes]], internal: Stage, warehouse: Warehouse) -> dict[str, Any] | str:
    """The table row of one file, its bytes copied into the internal stage; or why it was skipped."""
    rel, size, read = file
    try:
        row = checked_row(rel, size, read, warehouse.limits)
        row["image"] = store_image(internal, row["image"], row["sha256"], row["format"]).as_row()
    except (ImageError, StageError, OSError) as exc:  # StageError: a staged file gone or moved out meanwhile
        return str(exc)
    return row


def ahead(items: Iterable[T], work: Callable[[T], R], window: int) -> Iterator[tuple[T, R]]:
    """``(item, work(item))`` in order, with at most ``window`` items worked on at once (bounded memory)."""
    pool = worker_pool(window)
    running: deque[tuple[T, Future[R]]] = deque()
    for item in items:
        running.append((item, pool.submit(work, item)))
        if len(running) >= window:
            done, future = running.popleft()
            yield done, future.result()
    while running:
        done, future = running.popleft()
        yield done, future.result()
