"""The local copy of a BLOB table's image bytes that a dataset's worker processes read, and its lifetime.

A DataLoader worker must never open the warehouse (DuckDB lets one process hold the file), so a
dataset over a table of image bytes copies them once, when it is made, into one uncompressed Arrow
IPC file (:func:`sightql.train.shared_rows.write_rows`, as torchrun's ranks share a run's rows);
every process then memory-maps it, so an item reads only its own pages and nothing is unpickled.

The file lives in ``<warehouse>/snapshots/`` (or the ``snapshot_dir`` given) under a partial file's
name (:func:`sightql.partial_files.partial_path`: ``<table>.arrow.partial-<pid>-<8 hex>``): it belongs
to the process that made the dataset, which removes it once no dataset of its own uses it any more
(or at exit); one left by a process that was killed is removed by the next dataset made in that folder
(:func:`sightql.partial_files.remove_dead_partials`). A copy of the dataset in another process (a
DataLoader worker, forked or spawned) reads the file but never removes it.
"""

from __future__ import annotations

import os
import re
import weakref
from pathlib import Path
from typing import Any

from sightql.errors import SightQLError
from sightql.partial_files import partial_path, remove_dead_partials

SNAPSHOT_DIR = "snapshots"


class SnapshotFile:
    """The path of a snapshot; the instance made by :meth:`create` owns it and removes it when collected."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, folder: Path, table: str) -> "SnapshotFile":
        """A new, not yet written snapshot path for ``table`` in ``folder``, owned by this process."""
        folder.mkdir(parents=True, exist_ok=True)
        remove_dead_partials(folder)
        stem = re.sub(r"[^A-Za-z0-9_-]", "_", table)[:40] or "table"
        snapshot = cls(partial_path(folder / f"{stem}.arrow"))
        weakref.finalize(snapshot, _remove, snapshot.path, os.getpid())
        return snapshot

    def __reduce__(self) -> tuple[Any, ...]:
        return (SnapshotFile, (self.path,))  # a copy elsewhere reads the file; only the maker removes it

    def check(self) -> None:
        if not self.path.exists():
            raise SightQLError(
                f"the dataset's snapshot {self.path} is gone (the process that made the dataset ended or removed "
                "it); make the dataset again"
            )


def _remove(path: Path, owner: int) -> None:
    if os.getpid() == owner:  # a forked worker holds the same object; only the maker removes the file
        path.unlink(missing_ok=True)
