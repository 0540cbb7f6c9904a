"""A script of SQL statements: split by DuckDB's own parser, run in order, one result kept.

Statements are never split on ';' here: DuckDB's parser knows strings, quoted names and comments.
The result kept is the last *query*'s (a statement that can only return rows: SELECT, FROM, VALUES,
WITH, SHOW, DESCRIBE, SUMMARIZE, PRAGMA, EXPLAIN, CALL); a script with no query keeps its last
statement's result, as running that statement alone would give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import duckdb
import pyarrow as pa

from sightql.errors import ConfigError, SightQLError

Params = Sequence[Any] | dict[str, Any] | None


@dataclass(frozen=True)
class Statement:
    text: str
    is_query: bool  # DuckDB expects only a result set from it, no changed-row count


def split_statements(con: duckdb.DuckDBPyConnection, script: str) -> list[Statement]:
    """The statements of ``script`` as DuckDB's parser splits them (raises duckdb.Error on a syntax error)."""
    only_rows = [duckdb.ExpectedResultType.QUERY_RESULT]
    return [Statement(s.query, list(s.expected_result_type) == only_rows) for s in con.extract_statements(script)]


def run_statements(statements: list[Statement], params: Params, run: Callable[[str, Params], pa.Table]) -> pa.Table:
    """Run each statement with ``run`` and return the kept result (see the module's docstring).

    Each statement commits on its own unless the script opens a transaction; when statement k fails,
    the ones before it stay done and the error says which one it was.
    """
    if not statements:
        raise ConfigError("the script holds no SQL statement; write at least one, e.g. SELECT 42;")
    if params and len(statements) > 1:
        raise ConfigError(
            f"parameters bind to one statement and this script has {len(statements)}; "
            "run the statement that needs them on its own"
        )
    queries = [i for i, s in enumerate(statements) if s.is_query]
    kept = queries[-1] if queries else len(statements) - 1
    result = pa.table({})
    for number, statement in enumerate(statements, start=1):
        try:
            table = run(statement.text, params)
        except SightQLError as exc:
            if len(statements) > 1:  # keep the error's class; name the statement in its sentence
                exc.args = (f"statement {number} of {len(statements)}: {exc}",)
            raise
        if number - 1 == kept:
            result = table
    return result
