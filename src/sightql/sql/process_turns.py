"""One open session per warehouse per process, taken in turns by threads.

DuckDB shares one database, SQL functions included, between all of a process's connections to
a file, and every Session registers its own functions on it; two sessions open at once on one
warehouse in one process would collide. So a Session takes the warehouse's turn when it opens
and gives it back when it closes: a Streamlit app's tabs and an API server's request threads
wait for each other (up to the lock wait), and a thread that opens a second session on a
warehouse it already holds is told so at once instead of waiting for itself.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sightql.errors import WarehouseBusyError, WarehouseError


@dataclass
class _Turn:
    lock: threading.Lock = field(default_factory=threading.Lock)
    holder: str | None = None  # the thread's name, for messages
    holder_ident: int | None = None


_guard = threading.Lock()
_turns: dict[Path, _Turn] = {}


def take_turn(home: Path, wait: float, started: float | None = None) -> Callable[[], None]:
    """Wait until ``wait`` s after ``started`` (``time.monotonic()``; default now) for this process's
    turn on ``home``; returns the function that gives it back (call it once)."""
    started = time.monotonic() if started is None else started
    with _guard:
        turn = _turns.setdefault(home.resolve(), _Turn())
    me = threading.current_thread()
    if turn.holder_ident == me.ident:
        raise WarehouseError(
            f"this thread already has the warehouse {home} open in another session; "
            "use that session, or close it before opening a new one"
        )
    if not turn.lock.acquire(timeout=max(0.0, started + wait - time.monotonic())):
        raise WarehouseBusyError(
            f"the warehouse {home} is in use by another session of this process (thread {turn.holder}) "
            f"(waited {waited_since(started)}); close that session, or raise SIGHTQL_LOCK_WAIT"
        )
    turn.holder, turn.holder_ident = me.name, me.ident

    def give_back() -> None:  # call once: Session wraps it in a weakref.finalize
        turn.holder = turn.holder_ident = None
        turn.lock.release()

    return give_back


def waited_since(started: float) -> str:
    """'2.0 s': the time measured since ``started`` (``time.monotonic()``), for a busy message."""
    return f"{time.monotonic() - started:.1f} s"
