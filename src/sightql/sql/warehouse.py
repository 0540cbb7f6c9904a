"""The narrow warehouse context every layer below the Session takes.

A :class:`Warehouse` is what the registry, stages, SQL functions and jobs need of an open
warehouse and nothing more: its DuckDB connection (with cursor, transaction and query helpers),
its folder, the settings, image limits, device and error policy. The Session opens one with
:meth:`Warehouse.open`, composes the registry, stages and jobs over it and hands it down; no
module below the Session sees the Session.

Work that may run while DuckDB runs a query (a SQL function) uses its own short-lived cursor
(``cursor()``), a connection of its own to the same database, never the connection running the
query.

DuckDB lets one process at a time open the file, so a long job must not keep it open: inside
``with warehouse.released():`` the session's connection is closed, and each ``cursor()``,
``rows()``, ``transaction()`` and ``sql()`` opens the file for that call only (waiting for other
processes as an open does) and closes it straight after. Another process (the API, the app,
``sightql sql``, a second job) takes its turn between the job's short transactions. The session's
own connection opens again, its SQL functions registered again, when something next needs it.
"""

from __future__ import annotations

import threading
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
# How long a released job's own short opens wait for other processes, at least. A person at the
# API or `sightql sql` waits lock_wait (5 s) and is told who holds the file; a job that has run for
# an hour should not die because a query held the file for 6 s. It still fails, naming the holder,
# when the file stays taken this long. SIGHTQL_LOCK_WAIT raises it further, never lowers it.
JOB_LOCK_WAIT = 120.0


@dataclass(eq=False)
class Warehouse:
    """An open warehouse: connection helpers, folder, settings, image limits, device and error policy."""

    _con: Any  # the session's DuckDB connection; None while released or once closed
    home: Path
    settings: Settings
    device: str
    on_error: OnError = "null"
    limits: ImageLimits = field(init=False)
    _give_back_turn: Callable[[], None] = field(default=lambda: None, repr=False)
    read_only: bool = False
    lock_wait: float = 5.0
    _closed: bool = field(default=False, init=False)
    _released: int = field(default=0, init=False)  # depth of nested released() blocks
    _released_wait: float = field(default=0.0, init=False)  # the longest wait a released() block asked for
    _shared: Any = field(default=None, init=False, repr=False)  # inside released(): the file open for the running blocks
    _shared_users: int = field(default=0, init=False)
    _reopen_hooks: list[Callable[[Any], None]] = field(default_factory=list, init=False, repr=False)
    _guard: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)  # reentrant: a reopen hook opens cursors

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
        warehouse = cls(con, home, settings, device, on_error, give_back, read_only, lock_wait)
        try:
            ensure_catalog(con, read_only)
        except BaseException:
            warehouse.close()
            raise
        return warehouse

    def close(self) -> None:
        """Close the connection and give this process's turn back; a second call does nothing."""
        self._closed = True
        if self._con is not None:
            self._con.close()
            self._con = None
        self.give_back_turn()

    @property
    def con(self) -> Any:
        """The session's DuckDB connection (opened again if a job released it); None once closed."""
        return None if self._closed else self.connection()

    @property
    def is_released(self) -> bool:
        """Whether a job holds the warehouse released (each call opens and closes the file)."""
        return self._released > 0

    def on_reopen(self, hook: Callable[[Any], None]) -> None:
        """Run ``hook(connection)`` each time the session's connection opens again after a release
        (the Session registers its SQL functions again this way: they live on an open database)."""
        self._reopen_hooks.append(hook)

    @contextmanager
    def released(self, lock_wait: float = JOB_LOCK_WAIT) -> Iterator["Warehouse"]:
        """``with warehouse.released():`` closes the session's connection for a long job. Inside, every
        ``cursor()``, ``rows()``, ``transaction()`` and ``sql()`` opens the file for that call only and
        closes it after, so other processes use the warehouse between the job's short transactions.
        Keep each call short, and read image bytes from stages outside them. Each open waits up to
        ``lock_wait`` s (default :data:`JOB_LOCK_WAIT`) or the warehouse's own lock_wait, the longer."""
        with self._guard:
            if self._closed:
                raise WarehouseError("the session is closed; open the warehouse again with sightql.connect()")
            outer_wait = self._released_wait
            self._released += 1
            self._released_wait = max(outer_wait, lock_wait)
            if self._con is not None:
                self._con.close()
                self._con = None
        try:
            yield self
        finally:
            with self._guard:
                self._released -= 1
                self._released_wait = outer_wait

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
        """The session's open connection (opened again, waiting as an open does, after a release), or a
        WarehouseError saying how to open it again. Inside ``released()`` use ``cursor()`` instead."""
        with self._guard:
            if self._closed:
                raise WarehouseError("the session is closed; open the warehouse again with sightql.connect()")
            if self._released:
                raise WarehouseError(
                    "the warehouse is released for a long job; use warehouse.cursor() or transaction() for each step"
                )
            if self._con is None:
                self._con = self._open_file()
                for hook in self._reopen_hooks:
                    hook(self._con)
            return self._con

    def _open_file(self) -> Any:
        wait = max(self.lock_wait, self._released_wait) if self._released else self.lock_wait
        return open_warehouse_file(self.home / DB_FILE, read_only=self.read_only,
                                   memory_limit=self.settings.memory_limit, lock_wait=wait)

    @contextmanager
    def _short_connection(self) -> Iterator[Any]:
        """The session's connection, or inside ``released()`` a connection of this block's own, on a file
        opened for the blocks running now and closed when the last of them ends.

        One file open is shared by this process's concurrent blocks (a job's reading thread and its
        writer): DuckDB keeps one database per file in a process, and an open racing another thread's
        close of the last connection can fail ("already attached") instead of waiting."""
        if not self._released:
            yield self.connection()
            return
        with self._guard:
            if self._shared is None:
                self._shared = self._open_file()
            self._shared_users += 1
            con = self._shared.cursor()  # a connection of its own: threads never share one
        try:
            yield con
        finally:
            con.close()
            with self._guard:
                self._shared_users -= 1
                if self._shared_users == 0:
                    self._shared.close()
                    self._shared = None

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        """A short-lived cursor of its own (safe from threads and inside a running SQL function);
        inside ``released()`` the file is open only while the block runs."""
        with self._short_connection() as con:
            cursor = con.cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    def rows(self, query: str, params: Params = None) -> list[tuple[Any, ...]]:
        """Every row of ``query`` (bound ``params``), run on a short-lived cursor of its own."""
        with self.cursor() as cursor:
            return cursor.execute(query, params).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """``with warehouse.transaction() as cursor:``: the block's statements as one transaction
        (inside ``released()``, on a connection opened for the block and closed after it commits)."""
        with self._short_connection() as con, transaction(con) as cursor:
            yield cursor

    def sql(self, query: str, params: Params = None, *, limit: int | None = None) -> pa.Table:
        """Run SQL with bound parameters (``?`` or ``$name``); an Arrow table (empty for a statement
        with no result). ``limit`` fetches at most that many rows, computing no more."""
        try:
            with self._short_connection() as con:
                relation = con.sql(query, params=params)
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
            with self._short_connection() as con:
                statements = split_statements(con, script)
        except duckdb.Error as exc:
            raise clean_duckdb_error(exc) from None
        return run_statements(statements, params, self.sql)
