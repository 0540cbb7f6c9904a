"""``load_images``: files, folders, globs or stage prefixes into an image table.

A new table's ``image`` column holds FILE values: each file is copied into the warehouse's internal
stage by content and the row names the copy (:mod:`sightql.ingest.by_reference`). With
``inline=True``, or into a table made before (an ``image BLOB`` column), the bytes go into the table:
in batches of at most a share of DuckDB's memory limit (``write_budget``). Either way each batch is
one transaction that deletes the batch's paths and inserts its rows, so a reload replaces rows by
path and a failure part way keeps every batch committed before it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Callable

import duckdb

from sightql.errors import ImageError, SightQLError, StageError
from sightql.ingest.by_reference import load_by_reference
from sightql.ingest.rows import LoadReport, checked_row, prepare_image_table, write_rows
from sightql.sql.duckdb_errors import clean_duckdb_error
from sightql.sql.warehouse import Warehouse
from sightql.sql.write_budget import WriteBudget
from sightql.stages.catalog import StageCatalog
from sightql.stages.local_files import local_sources
from sightql.stages.paths import split_stage_ref


# A source yields (relative path, size, reader) so over-limit files are never read.
Source = Iterator[tuple[str, int, Callable[[], bytes]]]


def local_source(source: str) -> Source:
    for local, rel in local_sources(source):
        yield rel, os.path.getsize(local), (lambda p=local: open(p, "rb").read())


def stage_source(stages: StageCatalog, ref: str) -> Source:
    name, prefix = split_stage_ref(ref)
    stage = stages.get(name)
    files = stage.list(prefix)
    if not files:
        raise SightQLError(f"nothing in @{name} under {prefix or '/'!r}; put files there first")
    for f in files:
        yield f.relative_path, f.size, (lambda p=f.relative_path: stage.read_bytes(p))


def load_images(
    warehouse: Warehouse, stages: StageCatalog, table: str, source: str, *, inline: bool = False
) -> LoadReport:
    """Load a file, folder (recursive), glob or ``'@stage/prefix'`` (from ``stages``) into ``table``.

    A new table holds FILE values naming copies in the internal stage; ``inline=True`` makes it hold
    the bytes (BLOB) instead. An existing table is loaded the way its ``image`` column holds images."""
    report = LoadReport(table)
    try:
        _load(warehouse, stages, table, source, report, inline)
    except duckdb.Error as exc:
        error = clean_duckdb_error(exc)
        kept = f" ({len(report.loaded)} image(s) loaded before it are kept)" if report.loaded else ""
        raise type(error)(f"{error}{kept}") from None
    return report


def _load(warehouse: Warehouse, stages: StageCatalog, table: str, source: str, report: LoadReport, inline: bool) -> None:
    with warehouse.cursor() as cursor:
        quoted, by_reference = prepare_image_table(cursor, table, inline=inline)
    files = list(stage_source(stages, source) if source.startswith("@") else local_source(source))
    if by_reference:
        load_by_reference(warehouse, stages, quoted, files, report)
        return
    con, limits = warehouse.connection(), warehouse.limits
    budget = WriteBudget.of(con, warehouse.settings)
    budget.check_table(con, quoted, table, [(rel, size) for rel, size, _ in files if size <= limits.max_bytes])
    batch: list[dict] = []
    batch_bytes = 0
    for rel, size, read in files:
        if batch and batch_bytes + size > budget.batch_bytes:
            write_rows(warehouse, quoted, batch, report)
            batch, batch_bytes = [], 0
        try:
            row = checked_row(rel, size, read, limits)
        except (ImageError, StageError, OSError) as exc:  # StageError: a staged file gone or moved out meanwhile
            report.skipped.append((rel, str(exc)))
            continue
        batch.append(row)
        batch_bytes += row["size"]
    if batch:
        write_rows(warehouse, quoted, batch, report)

