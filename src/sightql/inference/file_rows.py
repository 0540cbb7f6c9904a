"""Tables whose image column holds FILE values: each row's bytes come from its stage, not from DuckDB.

The driver reads a run's FILE values by row id (small structs, no image bytes); the bytes are then
read from the stages by whoever predicts the run (this process, or a Dask worker, which gets the
FILE values and each stage's URL, never bytes), each file where it is decoded, in the engine's
pool and within the process's read budget (:class:`sightql.engine.ReadBudget`).

Incremental predict keys a FILE row by the value's recorded identity, ``file:<size>:<etag>`` (for a
file of the internal stage: its SHA-256, see :func:`file_identity`), stored in ``predicted_sha256``
(see docs/batch.md), so deciding what is due reads no bytes:

* identity not the current prediction's (a new row, or a value re-recorded after its file changed):
  the file is checked against the value's size and etag and its bytes are read and predicted;
* identity the current prediction's: the file is checked (a stat, no bytes); unchanged, the row is
  skipped; changed or gone, the row gets an error row, never a prediction from other bytes.

A read error (a missing, changed or forbidden file, an unknown stage) is that row's
``prediction_error`` with ``predicted_sha256`` NULL, so the next run tries the row again; an image
that does not decode is current until its value changes, as a bad BLOB is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from sightql.engine import read_budget, worker_pool
from sightql.errors import SightQLError, StageError
from sightql.inference.pipeline import Chunk
from sightql.stages.catalog import StageCatalog
from sightql.stages.files import STAGE_READERS, FileRef, check_file, file_reads
from sightql.stages.internal import is_internal_ref
from sightql.stages.stage import Stage

StageLookup = Callable[[str], Stage]  # a stage's name (no '@') -> the Stage; StageError when there is none


def file_identity(ref: FileRef | None) -> str | None:
    """What a prediction of ``ref`` was made from, as ``predicted_sha256`` stores it for a FILE column: for a
    file of the internal stage its SHA-256 (the row's ``sha256``, as for the BLOB it may have been before
    ``tables externalize``), else ``file:<size>:<etag>``."""
    if ref is None:
        return None
    return ref.etag if is_internal_ref(ref) else f"file:{ref.size}:{ref.etag}"


@dataclass(frozen=True)
class StageAddress:
    """What a worker needs to open a stage itself: its URL and S3 endpoint (credentials: the worker's environment)."""

    name: str
    url: str
    endpoint_url: str | None = None

    def open(self) -> Stage:
        return Stage(self.name, self.url, self.endpoint_url)


def stage_addresses(stages: StageCatalog, names: Iterable[str]) -> dict[str, StageAddress | str]:
    """The address of each stage named (e.g. by a run's FILE values), or why it cannot be opened (that
    rows' error on the worker)."""
    out: dict[str, StageAddress | str] = {}
    for name in set(names):
        try:
            stage = stages.get(name)
            out[name] = StageAddress(name, stage.url, stage.endpoint_url)
        except SightQLError as exc:
            out[name] = str(exc)
    return out


def stage_lookup(addresses: Mapping[str, StageAddress | str]) -> StageLookup:
    """A :data:`StageLookup` over :func:`stage_addresses`' answer (on a worker: the stages opened there)."""
    opened = {name: a.open() if isinstance(a, StageAddress) else a for name, a in addresses.items()}

    def lookup(name: str) -> Stage:
        found = opened.get(name, f"no stage named {name!r}")
        if isinstance(found, str):
            raise StageError(found)
        return found

    return lookup


_SKIP = object()


def read_file_rows(
    keys: pa.Array, refs: Sequence[FileRef | None], known: Sequence[str | None] | None, stages: StageLookup,
    budget_bytes: int | None = None,
) -> tuple[Chunk, int]:
    """The rows to predict and how many were skipped as current (checked by a stat each, in parallel).
    ``known``: each row's current prediction's identity ('' for a NULL image, None when it has none;
    ``known`` None: none has). The rows' bytes are not read here: the chunk reads each where it is
    decoded, within the process's read budget (``budget_bytes`` sizes it), so a run of phone photos
    holds about the pool's width of files, not the run's."""

    def due(index: int) -> object:
        ref = refs[index]
        identity = file_identity(ref)
        current = known[index] if known is not None else None
        if current is None or (identity or "") != current:
            return None
        try:
            if ref is not None:
                check_file(stages(ref.stage_name), ref)
            return _SKIP
        except SightQLError as exc:
            return str(exc)
        except OSError as exc:
            return f"cannot read {ref.label if ref else 'the file'}: {exc}"

    checks = list(worker_pool(STAGE_READERS).map(due, range(len(refs)))) if known is not None else [None] * len(refs)
    kept = [index for index, answer in enumerate(checks) if answer is not _SKIP]
    errors = [checks[index] for index in kept]
    chunk = Chunk(
        keys.take(pa.array(kept, pa.int64())),
        [None if errors[n] else refs[index] for n, index in enumerate(kept)],
        [None if errors[n] else file_identity(refs[index]) for n, index in enumerate(kept)],
        errors,  # type: ignore[arg-type]
        file_reads(stages, read_budget(budget_bytes)),
    )
    return chunk, len(refs) - len(kept)
