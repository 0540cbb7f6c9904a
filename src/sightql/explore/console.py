"""A query typed by a person, run and made ready to show: the first rows, image columns as thumbnails.

Used by the web app's SQL console. Only the rows shown are computed (the query is limited), binary
columns holding images and FILE columns (read from their stages, a few at a time) become ``data:``
URI thumbnails, and values a table widget cannot show (structs, lists, maps, intervals, ...) become
JSON or text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from sightql.engine import parallel_map
from sightql.errors import ConfigError
from sightql.images.thumbnails import THUMBNAIL_PX, thumbnail_data_uri
from sightql.sql.file_type import is_file_arrow
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.stages.files import STAGE_READERS, file_refs, read_ref_or_none


MAX_ROWS = 200


@dataclass
class ConsoleResult:
    table: pa.Table  # display-ready: plain scalars, text, and data: URIs in the image columns
    image_columns: list[str] = field(default_factory=list)
    truncated: bool = False  # the query has more rows than ``table`` holds
    statement: bool = False  # the SQL returned no result set (DDL, INSERT, ...)

    def summary(self, max_rows: int = MAX_ROWS) -> str:
        if self.statement:
            return "The statement ran; it returns no rows."
        if self.truncated:
            return f"Showing the first {max_rows} rows; the query returns more (add a LIMIT or a WHERE to narrow it)."
        return f"{self.table.num_rows} row(s)."


def run_console_query(
    warehouse: Warehouse, query: str, *, stages: StageCatalog | None = None, max_rows: int = MAX_ROWS,
    thumbnail_px: int = THUMBNAIL_PX,
) -> ConsoleResult:
    """Run ``query`` and return at most ``max_rows`` rows ready to show; with ``stages``, FILE columns
    show their images too."""
    if not query.strip():
        raise ConfigError("the query is empty; type some SQL, e.g. SELECT * FROM uploads")
    result = warehouse.sql(query, limit=max_rows + 1)
    if result.num_columns == 0:
        return ConsoleResult(result, statement=True)
    truncated = result.num_rows > max_rows
    result = result.slice(0, max_rows)
    names = result.column_names  # DuckDB already makes them distinct (a, a_1)
    columns: list[pa.Array] = []
    image_columns: list[str] = []
    for name, column in zip(names, result.columns):
        shown, is_image = _displayable(column, warehouse, stages, thumbnail_px)
        columns.append(shown)
        if is_image:
            image_columns.append(name)
    return ConsoleResult(pa.table(columns, names=names), image_columns, truncated)


def _is_plain(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
        or pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_date(kind)
        or pa.types.is_timestamp(kind) or pa.types.is_time(kind) or pa.types.is_null(kind)
    )


def _displayable(
    column: pa.ChunkedArray, warehouse: Warehouse, stages: StageCatalog | None, thumbnail_px: int
) -> tuple[pa.Array, bool]:
    """The column as a table widget can show it, and whether it holds images."""
    kind = column.type
    if _is_plain(kind):
        return column.combine_chunks(), False
    if stages is not None and is_file_arrow(kind):
        thumbnails = _file_thumbnails(column, warehouse, stages, thumbnail_px)
        if any(thumbnails):
            return pa.array(thumbnails, pa.string()), True
    values = column.to_pylist()
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        thumbnails = [thumbnail_data_uri(v, warehouse.limits, thumbnail_px) for v in values]
        if any(thumbnails):
            return pa.array(thumbnails, pa.string()), True
        return pa.array([None if v is None else _byte_count(v) for v in values], pa.string()), False
    if pa.types.is_nested(kind):
        return pa.array([None if v is None else json.dumps(v, default=_text) for v in values], pa.string()), False
    return pa.array([None if v is None else _text(v) for v in values], pa.string()), False


def _file_thumbnails(column: pa.ChunkedArray, warehouse: Warehouse, stages: StageCatalog, px: int) -> list[str | None]:
    """A thumbnail per FILE value, read from its stage; a file that is gone, changed or not an image gives None."""

    def thumbnail(ref: Any) -> str | None:
        data = read_ref_or_none(stages, ref)
        return None if data is None else thumbnail_data_uri(data, warehouse.limits, px)

    return parallel_map(thumbnail, file_refs(column.combine_chunks()), STAGE_READERS)


def _byte_count(value: bytes) -> str:
    return f"<{len(value):,} bytes>"


def _text(value: Any) -> str:
    return _byte_count(value) if isinstance(value, bytes) else str(value)
