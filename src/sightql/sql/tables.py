"""What a table holds, and its rows read by row id: the one introspection helper and the one rowid reader.

Names go through :func:`~sightql.sql.identifiers.quote_ident` (the caller's) or bound parameters;
every function takes a cursor, so callers on other threads use their own.
"""

from __future__ import annotations

from typing import Any, Sequence

import pyarrow as pa


def table_columns(cursor: Any, table: str) -> dict[str, str]:
    """Column name -> DuckDB type of ``table`` (optionally 'schema.table'), in order; empty when it does not exist."""
    return dict(_about(cursor, table, "column_name, data_type FROM duckdb_columns()", "NOT internal ORDER BY column_index"))


def primary_key(cursor: Any, table: str) -> list[str]:
    """The primary key's columns of ``table``; empty when it has none."""
    rows = _about(cursor, table, "constraint_column_names FROM duckdb_constraints()", "constraint_type = 'PRIMARY KEY'")
    return list(rows[0][0]) if rows else []


def _about(cursor: Any, table: str, select: str, condition: str) -> list[tuple[Any, ...]]:
    """Rows of one of DuckDB's catalog functions (``select``: columns FROM it) for ``table``."""
    schema, _, name = table.rpartition(".")
    return cursor.execute(
        f"SELECT {select} WHERE table_name = ? AND schema_name = ? AND {condition}", [name, schema or "main"]
    ).fetchall()


def read_rowids(cursor: Any, quoted_table: str, columns_sql: str, rowids: Sequence[int]) -> pa.Table:
    """``rowid`` plus ``columns_sql`` (already quoted expressions) of the rows at ``rowids`` (ascending).

    The range bounds let DuckDB skip straight to those rows and read only their values, in storage
    order; a row deleted meanwhile is simply absent from the result.
    """
    if not rowids:
        return pa.table({"rowid": pa.array([], pa.int64())})
    marks = ", ".join("?" for _ in rowids)
    return cursor.sql(  # a relation straight to Arrow (execute() then Arrow copies the rows, and DuckDB warns)
        f"SELECT rowid, {columns_sql} FROM {quoted_table} WHERE rowid BETWEEN ? AND ? AND rowid IN ({marks})",
        params=[min(rowids), max(rowids), *rowids],
    ).to_arrow_table()
