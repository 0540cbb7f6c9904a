"""Opening the warehouse's DuckDB file, waiting politely while another process holds it.

DuckDB lets one process write a database file at a time. SightQL's app and API open the
warehouse for each request and close it straight after, so a CLI job and the app take turns;
while a long job holds the file, an open retries with backoff (tenacity) for ``lock_wait`` seconds
and then fails with one sentence naming the process that holds it (psutil). Both are imported only
when the file is busy: tenacity costs ~0.1 s to import, more than opening the warehouse.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import duckdb

from sightql.errors import WarehouseBusyError, WarehouseError
from sightql.processes import command_line
from sightql.sql.process_turns import waited_since

_HOLDER_PID = re.compile(r"PID (\d+)")


def open_warehouse_file(
    path: Path, *, read_only: bool, memory_limit: str, lock_wait: float, started: float | None = None
) -> Any:
    """A DuckDB connection to ``path``; retries while another process holds its lock, until
    ``lock_wait`` s after ``started`` (``time.monotonic()`` when the caller began waiting; default now)."""
    started = time.monotonic() if started is None else started
    try:
        return _attempt(path, read_only, memory_limit)
    except _Locked:
        pass  # busy: retry at once, then after 0.05 s, doubling up to 1 s, until the deadline
    import tenacity

    deadline = started + max(0.0, lock_wait)
    backoff = tenacity.wait_exponential(multiplier=0.05, max=1.0)  # 0.05 s, doubling up to 1 s
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_Locked),
        stop=lambda state: time.monotonic() >= deadline,
        wait=lambda state: min(backoff(state), max(0.0, deadline - time.monotonic())),
        reraise=True,
    )
    try:
        return retrying(_attempt, path, read_only, memory_limit)
    except _Locked as exc:
        raise WarehouseBusyError(_lock_message(path.parent, str(exc), started)) from None


class _Locked(Exception):
    """Another process holds the file's lock (DuckDB's message)."""


def _attempt(path: Path, read_only: bool, memory_limit: str) -> Any:
    """One open: a connection, or _Locked to try again, or a WarehouseError that no wait mends."""
    try:
        return _connect(path, read_only, memory_limit)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise _Locked(str(exc)) from None
        raise WarehouseError(f"cannot open the warehouse {path.parent}: {exc}") from None
    except duckdb.Error as exc:
        raise WarehouseError(f"cannot open the warehouse {path.parent}: {exc}") from None


def _connect(path: Path, read_only: bool, memory_limit: str) -> Any:
    con = duckdb.connect(str(path), read_only=read_only, config={"memory_limit": memory_limit})
    con.execute("SET enable_progress_bar = false")  # it would write into command output
    # A scan holds 2,048 image rows at a time; keeping them in insertion order for LIMIT and
    # friends holds several such vectors more. Order comes from ORDER BY, as SQL promises.
    con.execute("SET preserve_insertion_order = false")
    # DuckDB would store large BLOBs with ZSTD, compressed a 2,048-row vector at a time: reading
    # any one image then decompresses 2,048 (measured: 10-100 ms and some 200 MB of the memory
    # limit per read of 50 KB JPEGs, whatever the row count asked for). JPEG and PNG do not shrink
    # under ZSTD anyway, so data this session writes is stored without it; reads by key or row id
    # then touch only the rows asked for. Data written before keeps its ZSTD segments until rewritten.
    con.execute("SET disabled_compression_methods = 'zstd'")
    return con


def _lock_message(home: Path, duckdb_text: str, started: float) -> str:
    match = _HOLDER_PID.search(duckdb_text)
    holder = f"process {match.group(1)}{_command_of(match.group(1))}" if match else "another process"
    return (
        f"the warehouse {home} is in use by {holder} (waited {waited_since(started)}); "
        "wait for it to finish, stop it, or raise SIGHTQL_LOCK_WAIT"
    )


def _command_of(pid: str) -> str:
    """`` (sightql predict ...)`` where the process's command line is readable, else nothing."""
    words = [w for w in command_line(int(pid)) or [] if w]
    if not words:
        return ""
    words[0] = Path(words[0]).name
    if len(words) > 1 and words[0].startswith("python") and words[1] not in ("-c", "-m"):
        words = [Path(words[1]).name, *words[2:]]
    text = " ".join(" ".join(words).split())
    return f" ({text[:80]}{'...' if len(text) > 80 else ''})"
