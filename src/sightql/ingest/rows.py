"""The rows of an image table: its columns, one checked row per file, and the batch write.

Shared by ``load_images`` (inline and by reference), uploads and generated images, so every image
table has the same columns and every image the same checks.
"""

from __future__ import annotations

import hashlib
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import duckdb
import pyarrow as pa

from sightql.errors import ImageError, TableError
from sightql.images.decode import ImageLimits, probe_image
from sightql.sql.file_type import FILE_ARROW, FILE_TYPE, is_file_type
from sightql.sql.identifiers import quote_ident
from sightql.sql.tables import table_columns
from sightql.sql.warehouse import Warehouse


IMAGE_COLUMNS = ("relative_path", "image", "size", "sha256", "width", "height", "format", "loaded_at")
# The columns every image table starts with (``generated_images`` adds its own after them);
# {image} is the image column's type: BLOB (inline) or the catalog type ``file``.
_COLUMN_DEFS = """relative_path VARCHAR PRIMARY KEY,
    image {image} NOT NULL,
    size BIGINT NOT NULL,
    sha256 VARCHAR NOT NULL,
    width INTEGER,
    height INTEGER,
    format VARCHAR"""
IMAGE_COLUMN_DEFS = _COLUMN_DEFS.format(image="BLOB")
IMAGE_TABLE_DDL = """CREATE TABLE IF NOT EXISTS {table} (
    {defs},
    loaded_at TIMESTAMPTZ NOT NULL
)"""


def _arrow_schema(image: pa.DataType) -> pa.Schema:
    return pa.schema(
        [
            ("relative_path", pa.string()), ("image", image), ("size", pa.int64()), ("sha256", pa.string()),
            ("width", pa.int32()), ("height", pa.int32()), ("format", pa.string()),
            ("loaded_at", pa.timestamp("us", tz="UTC")),
        ]
    )


_SCHEMAS = {False: _arrow_schema(pa.binary()), True: _arrow_schema(FILE_ARROW)}  # by reference -> schema


@dataclass
class LoadReport:
    table: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} image(s) into {self.table}; skipped {len(self.skipped)}"]
        lines += [f"  skipped {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


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


def prepare_image_table(con, table: str, *, inline: bool) -> tuple[str, bool]:
    """Create ``table`` if missing (``image file``, or ``image BLOB`` when ``inline``); its quoted name and
    whether its image column holds FILE values. An existing table's own column type decides."""
    quoted = quote_ident(table, "table name")
    defs = _COLUMN_DEFS.format(image="BLOB" if inline else FILE_TYPE)
    con.execute(IMAGE_TABLE_DDL.format(table=quoted, defs=defs))
    columns = table_columns(con, table)
    missing = [c for c in IMAGE_COLUMNS if c not in columns]
    if missing:
        raise TableError(
            f"table {table!r} exists but lacks image columns {missing}; load into a new table name instead"
        )
    return quoted, is_file_type(columns["image"])


def write_rows(warehouse: Warehouse, quoted: str, rows: list[dict], report: LoadReport, *, by_reference: bool = False) -> None:
    """One transaction: a reload of a path replaces its row (no INSERT OR REPLACE: see write_budget)."""
    paths = [row["relative_path"] for row in rows]
    with warehouse.transaction() as cursor:
        cursor.execute(f"DELETE FROM {quoted} WHERE relative_path IN (SELECT unnest(?::VARCHAR[]))", [paths])
        insert_rows(cursor, quoted, rows, by_reference=by_reference)
    report.loaded += paths


def insert_rows(con, quoted: str, rows: list[dict], *, by_reference: bool = False) -> None:
    """One INSERT of ``rows`` through a registered Arrow table (``image``: bytes, or a FILE value's fields)."""
    arrow = pa.Table.from_pylist(rows, schema=_SCHEMAS[by_reference])
    cols = ", ".join(IMAGE_COLUMNS)
    con.register("_sightql_load_batch", arrow)
    try:
        con.execute(f"INSERT INTO {quoted} ({cols}) SELECT {cols} FROM _sightql_load_batch")
    except BaseException:
        with suppress(duckdb.Error):  # an aborted transaction refuses even this; keep the first error
            con.unregister("_sightql_load_batch")
        raise
    con.unregister("_sightql_load_batch")
