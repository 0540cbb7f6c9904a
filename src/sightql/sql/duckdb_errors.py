"""DuckDB's exceptions -> one SightQLError sentence a user can act on."""

from __future__ import annotations

import re

import duckdb

from sightql.errors import MemoryLimitError, SightQLError, error_named

_OUT_OF_MEMORY = re.compile(r"Out of Memory Error|failed to (?:pin block|allocate data|allocate block)")


def clean_duckdb_error(exc: duckdb.Error) -> SightQLError:
    """DuckDB wraps a UDF's exception in its own text; keep only the user-facing sentence."""
    text = str(exc)
    match = re.search(r"(?:Python exception occurred while executing the UDF|UDF): (\w+): (.*)", text, re.S)
    if match:
        return error_named(match.group(1), match.group(2).strip())
    if _OUT_OF_MEMORY.search(text):
        first_line = text.splitlines()[0]
        return MemoryLimitError(
            f"{first_line}: the query needs more than the session's DuckDB memory limit; "
            "raise SIGHTQL_MEMORY_LIMIT (e.g. SIGHTQL_MEMORY_LIMIT=2GB) or read fewer image rows at once"
        )
    return SightQLError(text.split("\n\nLINE")[0].strip())
