"""A short-lived session per request, one at a time per warehouse in this process.

The warehouse is opened for one request and closed right after, so a CLI job in another
process gets its turn between requests. Within this process only one session is open at a
time: DuckDB shares one database, SQL functions included, between a process's connections
to a file, and each session registers its own functions.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sightql
from sightql.errors import WarehouseBusyError

_guard = threading.Lock()
_turns: dict[Path, threading.Lock] = {}


def _turn_of(home: Path) -> threading.Lock:
    with _guard:
        return _turns.setdefault(home.resolve(), threading.Lock())


@contextmanager
def request_session(home: Path, lock_wait: float) -> Iterator[sightql.Session]:
    """The open warehouse for this request; waits at most ``lock_wait`` s in all, then WarehouseBusyError."""
    started = time.monotonic()
    turn = _turn_of(home)
    if not turn.acquire(timeout=lock_wait):
        raise WarehouseBusyError(
            f"the warehouse {home} is busy with this server's other requests (waited {lock_wait:g} s); "
            "retry later, or raise SIGHTQL_LOCK_WAIT"
        )
    try:
        remaining = max(0.0, lock_wait - (time.monotonic() - started))
        with sightql.connect(home, lock_wait=remaining) as session:
            yield session
    finally:
        turn.release()
