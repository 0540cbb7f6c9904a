"""The narrow warehouse context every layer below the Session takes.

A :class:`Warehouse` is what the registry, stages, SQL functions and jobs need of an open
warehouse and nothing more: its DuckDB connection (with cursor, transaction and query helpers),
its folder, the settings, image limits, device and error policy. The Session opens one with
:meth:`Warehouse.open`, composes the registry, stages and jobs over it and hands it down; no
module below the Session sees the Session.

Work that may run while DuckDB runs a query (a SQL function) uses its own short-lived cursor
(``cursor()``), a connection of its own to the same database, never the connection running the
query.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import duckdb
import pyarrow as pa

from sightql.config import Settings
from sightql.errors import WarehouseError
from sightql.images.decode import ImageLimits
from sightql.sql.catalog import ensure_catalog
from sightql.sql.duckdb_errors import clean_duckdb_error
from sightql.sql.process_turns import take_turn
from sightql.sql.script import run_statements, split_statements
from sightql.sql.transactions import transaction
from sightql.sql.warehouse_file import open_warehouse_file

OnError = Literal["null", "raise"]
Params = Sequence[Any] | dict[str, Any] | None
DB_FILE = "warehouse.duckdb"


@dataclass(eq=False)
class Warehouse:
    """An open warehouse: connection helpers, folder, settings, image limits, device and error policy."""

    con: Any  # the DuckDB connection; None once closed
    home: Path
    settings: Settings
    device: str
    on_error: OnError = "null"
    limits: ImageLimits = field(init=False)
    _give_back_turn: Callable[[], None] = field(default=lambda: None, repr=False)

    def __post_init__(self) -> None:
        self.limits = ImageLimits(self.settings.max_image_bytes, self.settings.max_image_pixels)

    @classmethod
    def open(cls, home: Path, *, read_only: bool, settings: Settings, device: str, on_error: OnError,
             lock_wait: float) -> "Warehouse":
        """Take this process's turn on the warehouse at ``home`` and open its DuckDB file (creating it
        and its catalog tables if needed); waits up to ``lock_wait`` s for both together."""
        if not read_only:
            home.mkdir(parents=True, exist_ok=True)
        elif not (home / DB_FILE).exists():
            raise WarehouseError(f"no warehouse at {home}; create one with `sightql init {home}`")
        started = time.monotonic()  # one wait for the turn and the file together; a busy message says how long
        give_back = take_turn(home, lock_wait, started)
        try:
            con = open_warehouse_file(home / DB_FILE, read_only=read_only, memory_limit=settings.memory_limit,
                                      lock_wait=lock_wait, started=started)
        except BaseException:
            give_back()
            raise
        warehouse = cls(con, home, settings, device, on_error, give_back)
        try:
            ensure_catalog(con, read_only)
        except BaseException:
            warehouse.close()
            raise
        return warehouse

    def close(self) -> None:
        """Close the connection and give this process's turn back; a second call does nothing."""
        if self.con is not None:
            self.con.close()
            self.con = None
        self.give_back_turn()

    def give_back_turn(self) -> None:
        """Give this process's turn on the warehouse back, once (also run when a Session is collected unclosed)."""
        give_back, self._give_back_turn = self._give_back_turn, lambda: None
        give_back()

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def stages_dir(self) -> Path:
        return self.home / "stages"

    def connection(self) -> Any:
        """The open connection, or a WarehouseError saying how to open it again."""
        if self.con is None:
            raise WarehouseError("the session is closed; open the warehouse again with sightql.connect()")
        return self.con

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        """A short-lived cursor of its own (safe from threads and inside a running SQL function)."""
        cursor = self.connection().cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def rows(self, query: str, params: Params = None) -> list[tuple[Any, ...]]:
        """Every row of ``query`` (bound ``params``), run on a short-lived cursor of its own."""
        with self.cursor() as cursor:
            return cursor.execute(query, params).fetchall()

    def transaction(self) -> Any:
        """``with warehouse.transaction() as cursor:``: the block's statements as one transaction."""
        return transaction(self.connection())

    def sql(self, query: str, params: Params = None, *, limit: int | None = None) -> pa.Table:
        """Run SQL with bound parameters (``?`` or ``$name``); an Arrow table (empty for a statement
        with no result). ``limit`` fetches at most that many rows, computing no more."""
        try:
            relation = self.connection().sql(query, params=params)
            if relation is None:  # a statement with no result (DDL, INSERT without RETURNING)
                return pa.table({})
            if limit is not None:
                relation = relation.limit(limit)
            return relation.to_arrow_table()
        except duckdb.Error as exc:
            raise clean_duckdb_error(exc) from None

    def sql_script(self, script: str, params: Params = None) -> pa.Table:
        """Run ``;``-separated statements in order (DuckDB's parser splits them); the last query's result."""
        try:
            statements = split_statements(self.connection(), script)
        except duckdb.Error as exc:
            raise clean_duckdb_error(exc) from None
        return run_statements(statements, params, self.sql)
