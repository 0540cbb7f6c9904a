"""Which column identifies a table's rows for write-back: its primary key, ``key=``, or its path column.

Predictions are written by key (``UPDATE ... WHERE key = staging.key``, or an upsert into another
table keyed by it), so a key must name one row. A single-column primary key does by itself. A table
without one (as tables made by hand often are) uses ``key=`` a column of the user's choosing, or,
left out, its column of stage paths (the image column when it holds paths): either is checked to
hold no duplicate and no NULL before anything is written, and a table that fails says so in one
sentence naming the fix.
"""

from __future__ import annotations

from typing import Any

from sightql.errors import TableError
from sightql.sql.identifiers import quote_ident
from sightql.sql.tables import primary_key


def row_key(cursor: Any, table: str, columns: dict[str, str], image: str, key: str | None, paths: bool) -> str:
    """The key column of ``table`` (as the table spells it): its single-column primary key, else ``key``
    (any column; refused unless unique and never NULL), else the image column when it holds paths (``paths``)."""
    pk = primary_key(cursor, table)
    if key is not None:
        quote_ident(key, "key column name")
        found = next((name for name in columns if name.lower() == key.lower()), None)
        if found is None:
            raise TableError(f"table {table!r} has no column {key!r} for key=; pass one of its columns: {', '.join(columns)}")
        if pk != [found]:
            _check_unique(cursor, table, found, "key=")
        return found
    if len(pk) == 1:
        return pk[0]
    if paths:
        _check_unique(cursor, table, image, "its path column")
        return image
    shape = "a primary key of several columns" if pk else "no single-column primary key"
    raise TableError(
        f"table {table!r} has {shape}, so predictions cannot be written back by row; "
        "pass key= a column whose values are unique (--key), or give the table a primary key"
    )


def _check_unique(cursor: Any, table: str, column: str, how: str) -> None:
    """Refuse a key column holding a NULL or a value twice (two queries reading that column only)."""
    q_table, q_column = quote_ident(table, "table name"), quote_ident(column)
    (nulls,) = cursor.execute(f"SELECT count(*) FROM {q_table} WHERE {q_column} IS NULL").fetchone()
    duplicate = cursor.execute(
        f"SELECT {q_column}::VARCHAR, count(*) FROM {q_table} WHERE {q_column} IS NOT NULL "
        f"GROUP BY {q_column} HAVING count(*) > 1 ORDER BY 2 DESC, 1 LIMIT 1"
    ).fetchone()
    fix = "pass key= a column whose values are unique (--key), or give the table a primary key"
    if duplicate is not None:
        raise TableError(
            f"{column!r} of {table!r} ({how}) holds {duplicate[0]!r} {duplicate[1]} times, so predictions cannot be written "
            f"back by row; {fix}"
        )
    if nulls:
        raise TableError(
            f"{column!r} of {table!r} ({how}) is NULL in {nulls} row(s), so those rows cannot be written back; "
            f"fill or delete them, or {fix}"
        )
