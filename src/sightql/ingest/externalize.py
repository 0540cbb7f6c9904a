"""``tables externalize``: move a table's image bytes (a BLOB column) into the internal stage.

The table ends with the same rows, key and other columns (prediction columns included) and an
``image`` column of FILE values, each naming its bytes' copy in the internal stage. The job is made
of short transactions, with the warehouse released between them, and can be killed at any point:

1. add a ``file`` column, :data:`PENDING_COLUMN`, unless a run before made it;
2. for each chunk of rows still without a FILE value (at most :data:`CHUNK_BYTES` of images): read
   their bytes by row id, copy them into the internal stage (content-addressed; bytes already there
   are not written again), then set their FILE values in one transaction, only where the row still
   has the bytes that were read (a row reloaded meanwhile is done in a later chunk);
3. one transaction that finds no row left without a FILE value drops the BLOB column and renames
   the FILE column to ``image`` (NOT NULL). The ``image`` column is then the table's last.

A kill loses nothing: committed chunks stay done, a chunk killed part way is done again (its files
are there already), and the swap is all or nothing. A second run finishes the job; a run on a table
whose images are already FILE values says so and changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pyarrow as pa

from sightql.errors import TableError
from sightql.sql.file_type import FILE_ARROW, FILE_TYPE, is_file_type
from sightql.sql.identifiers import quote_ident
from sightql.sql.tables import read_rowids, table_columns
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.stages.internal import store_image
from sightql.stages.stage import Stage

PENDING_COLUMN = "_sightql_image_file"  # the FILE column being filled; renamed to ``image`` at the end
CHUNK_BYTES = 64 * 1024 * 1024  # image bytes read per chunk (memory is about this)
CHUNK_ROWS = 512
_UPDATES = pa.schema([("rowid", pa.int64()), ("sha256", pa.string()), ("file", FILE_ARROW)])


@dataclass
class ExternalizeReport:
    table: str
    moved: int = 0  # rows given a FILE value by this run
    already: bool = False  # the table's images were FILE values before this run

    def __str__(self) -> str:
        if self.already:
            return f"{self.table} already keeps its images in the warehouse's stage (FILE values); nothing to do"
        return f"externalized {self.table}: {self.moved} row(s) moved to the warehouse's stage; its image column holds FILE values"


def externalize_table(warehouse: Warehouse, stages: StageCatalog, table: str) -> ExternalizeReport:
    """Move ``table``'s BLOB ``image`` column into the internal stage (crash-safe, resumable; see the module)."""
    report = ExternalizeReport(table)
    quoted = quote_ident(table, "table name")
    pending = quote_ident(PENDING_COLUMN, "column name")
    with warehouse.released():
        with warehouse.transaction() as cursor:
            columns = table_columns(cursor, table)
            _check_table(table, columns)
            if is_file_type(columns["image"]):
                report.already = True
                return report
            if PENDING_COLUMN not in columns:
                cursor.execute(f"ALTER TABLE {quoted} ADD COLUMN {pending} {FILE_TYPE}")
        internal = stages.internal()
        while True:
            report.moved += _move_pending(warehouse, internal, quoted, pending)
            if _swap(warehouse, quoted, pending):
                return report


def _check_table(table: str, columns: dict[str, str]) -> None:
    if not columns:
        raise TableError(f"no table named {table!r}; list tables with `sightql sql \"SHOW TABLES\"`")
    missing = [c for c in ("relative_path", "image", "sha256", "format") if c not in columns]
    if missing:
        raise TableError(f"table {table!r} lacks the image-table columns {missing}; only tables made by `sightql load` can be externalized")
    if not is_file_type(columns["image"]) and columns["image"] != "BLOB":
        raise TableError(f"the image column of {table!r} is {columns['image']}, not BLOB; nothing to externalize")


def _move_pending(warehouse: Warehouse, internal: Stage, quoted: str, pending: str) -> int:
    """Give every row without a FILE value one, a chunk at a time; how many rows were given one."""
    with warehouse.cursor() as cursor:
        due = cursor.execute(
            f"SELECT rowid, octet_length(image) FROM {quoted} WHERE {pending} IS NULL ORDER BY rowid"
        ).fetchall()
    moved = 0
    for chunk in _chunks(due):
        with warehouse.cursor() as cursor:
            rows = read_rowids(cursor, quoted, "sha256, format, image", chunk)
        updates = {"rowid": [], "sha256": [], "file": []}
        for rowid, sha256, image_format, data in zip(*(rows.column(c).to_pylist() for c in ("rowid", "sha256", "format", "image"))):
            actual = hashlib.sha256(data).hexdigest()
            updates["rowid"].append(rowid)
            updates["sha256"].append(sha256)
            updates["file"].append(store_image(internal, data, actual, image_format or "").as_row())
        del rows
        moved += _set_files(warehouse, quoted, pending, pa.table(updates, schema=_UPDATES))
    return moved


def _chunks(due: list[tuple[int, int]]) -> list[list[int]]:
    """Row ids in chunks of at most CHUNK_ROWS rows and CHUNK_BYTES of images (a bigger image alone)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    size = 0
    for rowid, length in due:
        if current and (size + length > CHUNK_BYTES or len(current) >= CHUNK_ROWS):
            chunks.append(current)
            current, size = [], 0
        current.append(rowid)
        size += length
    return chunks + [current] if current else chunks


def _set_files(warehouse: Warehouse, quoted: str, pending: str, updates: pa.Table) -> int:
    """One transaction: each row's FILE value, where the row still has the bytes (sha256) that were read."""
    with warehouse.transaction() as cursor:
        cursor.register("_sightql_externalized", updates)
        try:
            (count,) = cursor.execute(
                f"UPDATE {quoted} AS t SET {pending} = u.file::{FILE_TYPE} FROM _sightql_externalized AS u "
                f"WHERE t.rowid = u.rowid AND t.sha256 = u.sha256 AND t.{pending} IS NULL"
            ).fetchone()
        finally:
            cursor.unregister("_sightql_externalized")
    return int(count)


def _swap(warehouse: Warehouse, quoted: str, pending: str) -> bool:
    """Drop the BLOB column and make the FILE column ``image``, in one transaction, once no row lacks its
    FILE value; False (nothing changed) when some row still does (loaded meanwhile)."""
    with warehouse.transaction() as cursor:
        (left,) = cursor.execute(f"SELECT count(*) FROM {quoted} WHERE {pending} IS NULL").fetchone()
        if left:
            return False
        cursor.execute(f"ALTER TABLE {quoted} DROP COLUMN image")
        cursor.execute(f"ALTER TABLE {quoted} RENAME COLUMN {pending} TO image")
        cursor.execute(f"ALTER TABLE {quoted} ALTER COLUMN image SET NOT NULL")
    return True
