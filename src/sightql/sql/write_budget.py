"""How many image bytes one write may carry, and an image table may hold, within DuckDB's memory limit.

Measured with DuckDB 2.0 at the default ``SIGHTQL_MEMORY_LIMIT=256MB`` (3.4 MB phone photos, 50 MB
files; docs/images.md keeps the numbers):

- ``INSERT OR REPLACE`` holds about four times its rows' bytes while it runs: 19 phone photos, or
  one 50 MB photo loaded a second time, ran out of memory. Deleting the batch's paths and then a
  plain ``INSERT``, in one transaction, holds about their bytes once; a batch is therefore at most
  an eighth of the limit (32 MB at 256MB), or a single file when that one file is larger.
- After a commit DuckDB checkpoints, and a checkpoint rewrites the image column of the table's
  row group (up to 122,880 rows) whole, holding every image of the table, and the rows replaced
  since the last checkpoint, in memory at once. Past the limit that checkpoint fails with a FATAL
  error that invalidates the connection. So before a write that would take a table there, the
  session's limit is raised to what the table needs, up to half the machine's memory, when the
  user left ``SIGHTQL_MEMORY_LIMIT`` unset; past that cap, or past a limit the user set, the write
  is refused first, with a sentence saying which limit to set. (A smaller ROW_GROUP_SIZE does not
  help: it cannot go below 2,048 rows.) Images by reference (bytes kept outside the table) remove
  this ceiling.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sightql.config import Settings
from sightql.errors import MemoryLimitError

BATCH_SHARE = 8  # one write carries at most 1/8 of the memory limit
TABLE_SHARE = 0.75  # the images of one table stay under 3/4 of it (the checkpoint needs them all)
UNKNOWN_LIMIT_BATCH = 64 * 1024 * 1024
_UNITS = {
    "bytes": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
}
_AMOUNT = re.compile(r"([0-9.]+)\s*(bytes|[KMGT]i?B)")


def memory_limit_bytes(con: Any) -> int | None:
    """The connection's DuckDB memory limit in bytes; None when DuckDB reports none we can read."""
    (text,) = con.execute("SELECT current_setting('memory_limit')").fetchall()[0]
    match = _AMOUNT.fullmatch(str(text).strip())
    return int(float(match.group(1)) * _UNITS[match.group(2)]) if match else None


def grow_cap() -> int:
    """The most a write may raise DuckDB's memory limit to on its own: half the machine's memory."""
    import psutil

    return int(psutil.virtual_memory().total // 2)


@dataclass(frozen=True)
class WriteBudget:
    limit: int | None  # bytes
    setting: str  # as the user gave it (SIGHTQL_MEMORY_LIMIT), for messages
    may_grow: bool = False  # the user left the limit unset: a write may raise it, up to grow_cap()

    @classmethod
    def of(cls, con: Any, settings: Settings) -> "WriteBudget":
        """The budget of ``con`` under the session's ``settings`` (the limit as given, and whether the user set it)."""
        return cls(memory_limit_bytes(con), settings.memory_limit, not settings.memory_limit_fixed)

    @property
    def batch_bytes(self) -> int:
        """Image bytes one write may carry (a larger single file still goes alone)."""
        return self.limit // BATCH_SHARE if self.limit else UNKNOWN_LIMIT_BATCH

    def check_table(self, con: Any, quoted: str, table: str, incoming: Sequence[tuple[str, int]]) -> None:
        """Refuse, before writing anything, a write of ``(relative_path, size)`` rows the table cannot take.

        The table's image bytes afterwards, plus the rows one batch replaces (still present at its
        checkpoint), must stay within :data:`TABLE_SHARE` of the limit.
        """
        if self.limit is None or not incoming:
            return
        stored, replaced = con.execute(
            f"SELECT coalesce(sum(t.size), 0), coalesce(sum(t.size) FILTER (WHERE n.path IS NOT NULL), 0) "
            f"FROM {quoted} AS t LEFT JOIN (SELECT DISTINCT unnest(?::VARCHAR[]) AS path) AS n "
            "ON t.relative_path = n.path",
            [[path for path, _ in incoming]],
        ).fetchall()[0]
        after = int(stored) - int(replaced) + sum(size for _, size in incoming)
        need = after + min(int(replaced), self.batch_bytes)
        if need <= self.limit * TABLE_SHARE:
            return
        # Room for the table plus one batch of replaced rows at the suggested limit, so a reload fits too.
        suggest = math.ceil(max(need / TABLE_SHARE, after / (TABLE_SHARE - 1 / BATCH_SHARE)) / 256e6) * 256
        if self.may_grow and suggest * 1e6 <= grow_cap():
            # A setting of the whole DuckDB instance, kept for the rest of the session: every later
            # checkpoint of this table needs it too. The number is ours, never the user's text.
            con.execute(f"SET memory_limit = '{int(suggest)}MB'")
            return
        raise MemoryLimitError(
            f"table {table!r} would hold {after / 1e6:,.0f} MB of images, and DuckDB rewrites a table's "
            f"images in memory when rows are added, which needs more than SIGHTQL_MEMORY_LIMIT={self.setting}; "
            f"set SIGHTQL_MEMORY_LIMIT={suggest}MB or more, or write into another table (nothing was written)"
        )
