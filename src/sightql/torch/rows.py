"""What a dataset holds instead of a warehouse connection: its rows, and how any process reads their bytes.

:class:`Rows` is a picklable list of (key, name, label, identity); its ``reader`` turns a key into the
image's bytes in whichever process asks, without the warehouse:

* :class:`SnapshotBytes` - a BLOB table's bytes, from the memory-mapped snapshot file
  (:mod:`sightql.torch.snapshot_file`);
* :class:`FileBytes` - a table of FILE values: the file from its stage, checked against the size and
  etag the value recorded (:func:`sightql.stages.files.file_reads`), within a read budget;
* :class:`StageBytes` - a stage's file by its relative path.

Stages are read through :class:`sightql.stages.stage.Stage`, whose sandbox refuses any path that leads
outside the stage (links included), in the worker as in the process that made the dataset.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol, Sequence, TypeVar

from sightql.engine import BudgetedRead, ReadBudget, parallel_map, read_budget
from sightql.errors import SightQLError
from sightql.stages.files import STAGE_READERS, FileRef, file_reads
from sightql.stages.stage import Stage
from sightql.torch.snapshot_file import SnapshotFile
from sightql.train.shared_rows import SharedRowsReader

X = TypeVar("X")
FILE_IDENTITY = "file:"  # a FILE value's identity ('file:<size>:<etag>') where no content hash is known


class RowBytes(Protocol):
    description: str  # the source, for messages: a table name or '@stage/prefix'

    def use(self, key: Any, fn: Callable[[bytes | None], X]) -> X:
        """``fn`` of the bytes ``key`` names; a file that cannot be read raises StageError."""
        ...


class _PerProcess:
    """A reader's state opened lazily in each process that uses it, and never pickled."""

    _opened: tuple[int, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_opened", None)
        return state

    def _here(self, open_: Callable[[], Any]) -> Any:
        if self._opened is None or self._opened[0] != os.getpid():  # a forked worker opens its own
            self._opened = (os.getpid(), open_())
        return self._opened[1]


class SnapshotBytes(_PerProcess):
    """Row ``key`` of the snapshot file, memory-mapped once per process."""

    def __init__(self, snapshot: SnapshotFile, description: str):
        self.snapshot = snapshot
        self.description = description

    def _open(self) -> SharedRowsReader:
        self.snapshot.check()
        return SharedRowsReader(self.snapshot.path, self.description)

    def use(self, key: Any, fn: Callable[[bytes | None], X]) -> X:
        (data,) = self._here(self._open).read([key])
        return fn(data)


class FileBytes(_PerProcess):
    """A FILE value's bytes from its stage. In the process that made the dataset reads share the process's
    one read budget; any other process (a DataLoader worker) gets a budget of the same size of its own."""

    def __init__(self, stages: dict[str, Stage], budget_bytes: int, description: str):
        self.stages = stages
        self.budget_bytes = budget_bytes
        self.description = description
        self.maker = os.getpid()

    def _open(self) -> BudgetedRead:
        budget = read_budget(self.budget_bytes) if os.getpid() == self.maker else ReadBudget(self.budget_bytes)
        return file_reads(self.stages.__getitem__, budget)

    def use(self, key: Any, fn: Callable[[bytes | None], X]) -> X:
        return self._here(self._open).use(key, fn)


class StageBytes:
    """A stage's file by its relative path."""

    def __init__(self, stage: Stage, description: str):
        self.stage = stage
        self.description = description

    def use(self, key: Any, fn: Callable[[bytes | None], X]) -> X:
        return fn(self.stage.read_bytes(str(key)))


@dataclass(frozen=True)
class Rows:
    """A dataset's rows, in order. ``identities`` are sha256 hex digests of the bytes, or a FILE value's
    ``file:<size>:<etag>`` where the table keeps no hash; ``positions`` are each row's place in the dataset
    first made (a split keeps them, so augmentation draws stay with the row)."""

    keys: tuple[Any, ...]
    names: tuple[str, ...]
    labels: tuple[str, ...]
    identities: tuple[str, ...]
    positions: tuple[int, ...]
    reader: RowBytes

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def description(self) -> str:
        return self.reader.description

    def subset(self, indices: Sequence[int]) -> "Rows":
        def pick(values: tuple[Any, ...]) -> tuple[Any, ...]:
            return tuple(values[i] for i in indices)

        return replace(self, keys=pick(self.keys), names=pick(self.names), labels=pick(self.labels),
                       identities=pick(self.identities), positions=pick(self.positions))

    def content_hashes(self) -> list[str]:
        """Each row's sha256; rows known only by a FILE identity are read now (``STAGE_READERS`` at a time)."""
        unknown = [i for i, identity in enumerate(self.identities) if identity.startswith(FILE_IDENTITY)]
        hashes = list(self.identities)
        for i, digest in zip(unknown, parallel_map(self._hash, unknown, STAGE_READERS)):
            hashes[i] = digest or hashes[i]
        return hashes

    def _hash(self, index: int) -> str | None:
        """The sha256 of row ``index``'s bytes; None when they cannot be read now (the row says why when loaded)."""
        try:
            return self.reader.use(self.keys[index], lambda data: hashlib.sha256(data or b"").hexdigest())
        except (SightQLError, OSError):
            return None


def file_stages(refs: Sequence[FileRef | None], get: Callable[[str], Stage]) -> dict[str, Stage]:
    """The stages ``refs`` name, by name (looked up once, now, while the catalog is at hand)."""
    return {name: get(name) for name in sorted({r.stage_name for r in refs if r is not None})}
