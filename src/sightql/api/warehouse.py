"""A short-lived session per request.

The warehouse is opened for one request and closed right after, so a CLI job in another
process gets its turn between requests. Within this process, sessions on one warehouse take
turns too (see :mod:`sightql.sql.process_turns`): request threads wait for each other, and all
the waiting together is bounded by ``lock_wait``, after which the request gets a 503.
"""

from __future__ import annotations

from pathlib import Path

import sightql


def request_session(home: Path, lock_wait: float) -> sightql.Session:
    """The open warehouse for this request (use it in a ``with``); WarehouseBusyError after ``lock_wait`` s."""
    return sightql.connect(home, lock_wait=lock_wait)
