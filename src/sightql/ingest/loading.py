"""``load_images``: files, folders, globs or stage prefixes into an image table.

Files are written in batches of at most a share of DuckDB's memory limit (``write_budget``), each
batch one transaction that deletes the batch's paths and inserts its rows, so a reload replaces
rows by path and a failure part way keeps every batch committed before it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import duckdb
import pyarrow as pa

from sightql.errors import ImageError, SightQLError, StageError, TableError
from sightql.images.decode import ImageLimits, probe_image
from sightql.sql.duckdb_errors import clean_duckdb_error
from sightql.sql.identifiers import quote_ident
from sightql.sql.tables import table_columns
from sightql.sql.warehouse import Warehouse
from sightql.sql.write_budget import WriteBudget
from sightql.stages.catalog import StageCatalog
from sightql.stages.local_files import local_sources
from sightql.stages.paths import split_stage_ref


IMAGE_COLUMNS = ("relative_path", "image", "size", "sha256", "width", "height", "format", "loaded_at")
# The columns every image table starts with (``generated_images`` adds its own after them).
IMAGE_COLUMN_DEFS = """relative_path VARCHAR PRIMARY KEY,
    image BLOB NOT NULL,
    size BIGINT NOT NULL,
    sha256 VARCHAR NOT NULL,
    width INTEGER,
    height INTEGER,
    format VARCHAR"""
IMAGE_TABLE_DDL = f"""CREATE TABLE IF NOT EXISTS {{table}} (
    {IMAGE_COLUMN_DEFS},
    loaded_at TIMESTAMPTZ NOT NULL
)"""
_ARROW_SCHEMA = pa.schema(
    [
        ("relative_path", pa.string()), ("image", pa.binary()), ("size", pa.int64()), ("sha256", pa.string()),
        ("width", pa.int32()), ("height", pa.int32()), ("format", pa.string()),
        ("loaded_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass
class LoadReport:
    table: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} image(s) into {self.table}; skipped {len(self.skipped)}"]
        lines += [f"  skipped {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


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


def checked_row(rel: str, size: int, read: Callable[[], bytes], limits: ImageLimits) -> dict:
    """A table row for one file, after the size limit (before reading) and the header check."""
    if size > limits.max_bytes:
        raise ImageError(f"file is {size:,} bytes, over the {limits.max_bytes:,}-byte limit")
    data = read()
    header = probe_image(data, limits)
    return {
        "relative_path": rel, "image": data, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        "width": header.width, "height": header.height, "format": header.format,
        "loaded_at": datetime.now(timezone.utc),
    }


def ensure_image_table(con, table: str) -> str:
    quoted = quote_ident(table, "table name")
    con.execute(IMAGE_TABLE_DDL.format(table=quoted))
    columns = table_columns(con, table)
    missing = [c for c in IMAGE_COLUMNS if c not in columns]
    if missing:
        raise TableError(
            f"table {table!r} exists but lacks image columns {missing}; load into a new table name instead"
        )
    return quoted


def load_images(warehouse: Warehouse, stages: StageCatalog, table: str, source: str) -> LoadReport:
    """Load a file, folder (recursive), glob or ``'@stage/prefix'`` (from ``stages``) into ``table``."""
    report = LoadReport(table)
    try:
        _load(warehouse, stages, table, source, report)
    except duckdb.Error as exc:
        error = clean_duckdb_error(exc)
        kept = f" ({len(report.loaded)} image(s) loaded before it are kept)" if report.loaded else ""
        raise type(error)(f"{error}{kept}") from None
    return report


def _load(warehouse: Warehouse, stages: StageCatalog, table: str, source: str, report: LoadReport) -> None:
    con, limits = warehouse.connection(), warehouse.limits
    quoted = ensure_image_table(con, table)
    files = list(stage_source(stages, source) if source.startswith("@") else local_source(source))
    budget = WriteBudget.of(con, warehouse.settings)
    budget.check_table(con, quoted, table, [(rel, size) for rel, size, _ in files if size <= limits.max_bytes])
    batch: list[dict] = []
    batch_bytes = 0
    for rel, size, read in files:
        if batch and batch_bytes + size > budget.batch_bytes:
            _write(warehouse, quoted, batch, report)
            batch, batch_bytes = [], 0
        try:
            row = checked_row(rel, size, read, limits)
        except (ImageError, StageError, OSError) as exc:  # StageError: a staged file gone or moved out meanwhile
            report.skipped.append((rel, str(exc)))
            continue
        batch.append(row)
        batch_bytes += row["size"]
    if batch:
        _write(warehouse, quoted, batch, report)


def _write(warehouse: Warehouse, quoted: str, rows: list[dict], report: LoadReport) -> None:
    """One transaction: a reload of a path replaces its row (no INSERT OR REPLACE: see write_budget)."""
    paths = [row["relative_path"] for row in rows]
    with warehouse.transaction() as cursor:
        cursor.execute(f"DELETE FROM {quoted} WHERE relative_path IN (SELECT unnest(?::VARCHAR[]))", [paths])
        insert_rows(cursor, quoted, rows)
    report.loaded += paths


def insert_rows(con, quoted: str, rows: list[dict]) -> None:
    """One INSERT of ``rows`` through a registered Arrow table."""
    arrow = pa.Table.from_pylist(rows, schema=_ARROW_SCHEMA)
    cols = ", ".join(IMAGE_COLUMNS)
    con.register("_sightql_load_batch", arrow)
    try:
        con.execute(f"INSERT INTO {quoted} ({cols}) SELECT {cols} FROM _sightql_load_batch")
    except BaseException:
        with suppress(duckdb.Error):  # an aborted transaction refuses even this; keep the first error
            con.unregister("_sightql_load_batch")
        raise
    con.unregister("_sightql_load_batch")
