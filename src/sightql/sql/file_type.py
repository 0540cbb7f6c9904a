"""The SQL type ``file``: a reference to one file in a stage (see :mod:`sightql.stages.files`).

A catalog type like the catalog tables, so a table column can be declared ``image file`` and keeps
its type across sessions; its fields are fixed here, once, for SQL and for Arrow.
"""

from __future__ import annotations

import pyarrow as pa

FILE_TYPE = "file"
FILE_FIELDS: tuple[tuple[str, str, pa.DataType], ...] = (
    ("stage", "VARCHAR", pa.string()),
    ("relative_path", "VARCHAR", pa.string()),
    ("size", "BIGINT", pa.int64()),
    ("etag", "VARCHAR", pa.string()),
    ("content_type", "VARCHAR", pa.string()),
    ("last_modified", "TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
)
FILE_SQL = "STRUCT(" + ", ".join(f"{name} {sql}" for name, sql, _ in FILE_FIELDS) + ")"
FILE_ARROW = pa.struct([(name, arrow) for name, _, arrow in FILE_FIELDS])
FILE_TYPE_DDL = f"CREATE TYPE IF NOT EXISTS {FILE_TYPE} AS {FILE_SQL}"

# How DuckDB reports a ``file`` column's type (duckdb_columns(), DESCRIBE): the STRUCT spelled out.
_REPORTED = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}
FILE_REPORTED_SQL = "STRUCT(" + ", ".join(f"{name} {_REPORTED.get(sql, sql)}" for name, sql, _ in FILE_FIELDS) + ")"


def is_file_arrow(kind: pa.DataType) -> bool:
    """Whether an Arrow type (a query result's column) is a ``file`` value: a struct of exactly its fields."""
    return pa.types.is_struct(kind) and [kind.field(i).name for i in range(kind.num_fields)] == [
        name for name, _, _ in FILE_FIELDS
    ]


def is_file_type(data_type: str) -> bool:
    """Whether a column type, as DuckDB reports it (e.g. :func:`sightql.sql.tables.table_columns`), is ``file``."""
    return data_type.lower() == FILE_TYPE or data_type == FILE_REPORTED_SQL
