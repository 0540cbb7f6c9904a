"""The answers of ai_classify / ai_complete, kept in the warehouse table ``sightql_ai_answers``.

One row per answer, keyed by (image sha256, task, labels or prompt, model, endpoint), so a rerun, in
this process or another, sends no request for an image already answered. The table holds the
endpoint without credentials and never a key. The model's raw answer is kept (for ai_classify the
label is matched again on each read, so an answer outside the labels stays that row's error without
a new request); failures are not kept, so a rerun tries them again.

The cache is read and written while DuckDB runs the query that called the SQL function, so it uses
cursors of its own (``Warehouse.rows`` and ``Warehouse.transaction``), never the query's
connection; each call's new answers are written in one short transaction, the table is created on
the first write. A read-only warehouse is read, not written. A write that fails (another process
wrote the same answer first) costs a request on a later run, never an answer now, and is said as a
warning.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from sightql.sql.warehouse import Warehouse

ANSWERS_TABLE = "sightql_ai_answers"
_CREATE = f"""CREATE TABLE IF NOT EXISTS {ANSWERS_TABLE} (
    key VARCHAR PRIMARY KEY,
    image_sha256 VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    request VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    endpoint VARCHAR NOT NULL,
    answer VARCHAR NOT NULL,
    answered_at TIMESTAMP NOT NULL DEFAULT current_timestamp
)"""
_COLUMNS = ("key", "image_sha256", "task", "request", "model", "endpoint", "answer")
_NEW = "_sightql_ai_new_answers"


@dataclass(frozen=True)
class Answer:
    key: str
    image_sha256: str
    task: str
    request: str
    model: str
    endpoint: str
    answer: str


class AnswerCache:
    """Get and put answers by key, through cursors of their own (safe inside a running query)."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse
        self._created = False
        self._lock = threading.Lock()  # one write at a time from this session: no conflicting inserts

    def get(self, keys: Iterable[str]) -> dict[str, str]:
        """``{key: answer}`` for the keys that have one."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        try:
            rows = self.warehouse.rows(
                f"SELECT key, answer FROM {ANSWERS_TABLE} WHERE key IN (SELECT unnest(?::VARCHAR[]))", [wanted]
            )
        except duckdb.CatalogException:  # nothing answered in this warehouse yet
            return {}
        return dict(rows)

    def put(self, answers: Sequence[Answer]) -> None:
        """Keep ``answers`` (an answer kept already, e.g. by another process, is left as it is)."""
        if not answers or self.warehouse.read_only:
            return
        table = pa.table({name: [getattr(a, name) for a in answers] for name in _COLUMNS})
        columns = ", ".join(_COLUMNS)
        with self._lock:
            try:
                if not self._created:
                    with self.warehouse.transaction() as cursor:
                        cursor.execute(_CREATE)
                    self._created = True
                with self.warehouse.transaction() as cursor:
                    cursor.register(_NEW, table)
                    cursor.execute(
                        f"INSERT INTO {ANSWERS_TABLE} ({columns}) SELECT DISTINCT ON (key) {columns} FROM {_NEW} "
                        "ON CONFLICT DO NOTHING"
                    )
            except duckdb.Error as exc:
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                warnings.warn(f"{len(answers)} vision-language answers were not cached ({first_line}); "
                              "a rerun asks the provider for them again", RuntimeWarning, stacklevel=2)
