"""Tables whose image column holds stage paths (VARCHAR): each row's file is found in a stage, then read
as a FILE value made on the spot.

A value is a path relative to the stage ``stage=`` names (``'shirt/img_01.jpg'`` with
``stage='@clothing'``; a prefix too: ``'@clothing/test'``), or a full reference ``'@stage/path'``
(always, with or without ``stage=``). Each path goes through the stage's sandbox
(:meth:`sightql.stages.stage.Stage.stat`: no '..', no absolute path, no link leading out), so a
path that would leave its stage, a missing file or an unknown stage is that row's error, never a
crash, and the other rows go on.

Incremental as FILE rows (:mod:`sightql.inference.file_rows`), but the file is the truth, not a
recorded value: each due row's file is stat-ed (no bytes; a ``HEAD`` on S3), giving a FILE value
of what the file is now, whose identity (:func:`path_identity`) is compared with the one its
current prediction was made from. The same identity: the row is skipped without reading a byte.
Another one (a new row, a rewritten file, a changed path): the file is read, checked against what
the stat saw (bytes changed in between are that row's error, retried next run) and predicted.

Whoever predicts the run does this: the local runner's reading thread, or a Dask worker, which gets
the keys, the paths and the stages' addresses, never the warehouse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from sightql.engine import read_budget, worker_pool
from sightql.errors import SightQLError, StagePathError
from sightql.inference.file_rows import StageLookup, file_identity
from sightql.inference.pipeline import Chunk
from sightql.stages.catalog import StageCatalog
from sightql.stages.files import STAGE_READERS, FileRef, file_reads
from sightql.stages.internal import is_internal_ref
from sightql.stages.paths import safe_relative_path, split_stage_ref


@dataclass(frozen=True)
class PathBase:
    """Where a path column's values point: relative to ``stage`` (under ``prefix``); a value starting
    with '@' is a full reference. ``stage`` None: every value must be a full reference."""

    stage: str | None = None
    prefix: str = ""

    def locate(self, value: str) -> tuple[str, str]:
        """(stage name, path in that stage) of one value; StagePathError/ConfigError when it cannot be one."""
        if value.startswith("@"):
            name, path = split_stage_ref(value)
            if not path:
                raise StagePathError(f"{value!r} names a stage, not a file in it; store '@stage/path' references")
            return name, path
        if self.stage is None:
            raise StagePathError(
                f"{value!r} is not a stage reference such as '@photos/a.jpg'; pass stage= the stage the paths are relative to"
            )
        path = safe_relative_path(value)
        return self.stage, f"{self.prefix}/{path}" if self.prefix else path

    def stage_names(self, values: Sequence[str | None]) -> set[str]:
        """The stages ``values`` name (for a Dask worker's addresses); values that name none are left out."""
        names = {self.stage} if self.stage is not None else set()
        for value in values:
            if value is not None and value.startswith("@"):
                name = value[1:].partition("/")[0]
                if name:
                    names.add(name)
        return names


def path_base(stages: StageCatalog, stage: str | None) -> PathBase:
    """The base ``stage=`` names ('@clothing', '@clothing/test' or 'clothing'), checked to exist (one
    sentence naming the known stages if not); None: values must be full '@stage/path' references."""
    if stage is None:
        return PathBase()
    name, prefix = split_stage_ref(stage if stage.startswith("@") else f"@{stage}")
    stages.get(name)  # raises naming the known stages
    return PathBase(name, prefix)


def path_identity(ref: FileRef | None) -> str | None:
    """What a path row's prediction was made from, as ``predicted_sha256`` stores it: the file's identity
    (:func:`~sightql.inference.file_rows.file_identity`) and, unless that is its content hash, where it is
    (``file:<size>:<etag>:@stage/path``), so a row moved to another file of the same size and etag is redone."""
    identity = file_identity(ref)
    if ref is None or identity is None or is_internal_ref(ref):
        return identity
    return f"{identity}:{ref.label}"


def read_path_rows(
    keys: pa.Array, paths: Sequence[str | None], known: Sequence[str | None] | None, base: PathBase,
    stages: StageLookup, budget_bytes: int | None = None,
) -> tuple[Chunk, int]:
    """The rows to predict and how many were skipped as current. Each path is stat-ed (in parallel, no
    bytes); ``known``: each row's current prediction's identity ('' for a NULL path, None when it has
    none; ``known`` None: none has). A row whose file cannot be found is kept with its error."""

    def look(index: int) -> FileRef | str | None:
        value = paths[index]
        if value is None:
            return None
        try:
            name, path = base.locate(value)
            return FileRef.of(name, stages(name).stat(path))
        except SightQLError as exc:
            return str(exc)
        except OSError as exc:
            return f"cannot read {value!r}: {exc}"

    found = list(worker_pool(STAGE_READERS).map(look, range(len(paths))))
    kept: list[int] = []
    for index, ref in enumerate(found):
        current = known[index] if known is not None else None
        if current is not None and not isinstance(ref, str) and (path_identity(ref) or "") == current:
            continue  # the same file as its current prediction's: no byte read
        kept.append(index)
    refs = [found[index] if isinstance(found[index], FileRef) else None for index in kept]
    chunk = Chunk(
        keys.take(pa.array(kept, pa.int64())),
        refs,
        [path_identity(ref) for ref in refs],  # type: ignore[arg-type]
        [found[index] if isinstance(found[index], str) else None for index in kept],  # type: ignore[misc]
        file_reads(stages, read_budget(budget_bytes)),
    )
    return chunk, len(paths) - len(kept)
