"""One transaction on its own cursor: committed when the block ends, rolled back when it raises."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import duckdb


@contextmanager
def transaction(con: Any) -> Iterator[Any]:
    """``with transaction(con) as cursor:`` runs the block's statements as one transaction."""
    cursor = con.cursor()
    try:
        cursor.execute("BEGIN TRANSACTION")
        try:
            yield cursor
        except BaseException:
            with suppress(duckdb.Error):  # a connection DuckDB invalidated has nothing left to roll back
                cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")
    finally:
        cursor.close()
