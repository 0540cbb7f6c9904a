"""FILE values: a reference to one file in a stage, as Snowflake's FILE type and BigQuery's ObjectRef.

A FILE is a SQL ``STRUCT`` (the catalog type ``file``, :mod:`sightql.sql.file_type`) with the stage, the
relative path and what the file was when the value was made: size, etag (S3's ETag; for a local
stage its size and modification time), content type and last-modified time. Images stay in the
stage; tables hold these references, so a query or job reads the bytes itself, a batch at a time.

Reading a FILE checks the file first: if its size or etag is no longer the recorded one, the
bytes changed since the value was made and :func:`read_file` raises
:class:`~sightql.errors.StageFileChangedError` (in SQL: that row's error), rather than answering
for other bytes than the ones recorded.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from sightql.engine import BudgetedRead, ReadBudget
from sightql.errors import SightQLError, StageError, StageFileChangedError
from sightql.sql.file_type import FILE_FIELDS
from sightql.stages.catalog import StageCatalog
from sightql.stages.paths import split_stage_ref
from sightql.stages.stage import Stage, StageFile

STAGE_READERS = 8  # files read at once from a stage (I/O bound, so not tied to the cores)


@dataclass(frozen=True)
class FileRef:
    """One FILE value: which file, and what it was when recorded."""

    stage: str  # '@name'
    relative_path: str
    size: int
    etag: str
    content_type: str | None
    last_modified: datetime | None

    @classmethod
    def of(cls, stage_name: str, found: StageFile) -> "FileRef":
        """The FILE value of a file as a stage lists it (or as :meth:`Stage.stat` reads it now)."""
        return cls(
            f"@{stage_name.lstrip('@')}", found.relative_path, found.size, found.etag,
            content_type(found.relative_path), found.last_modified,
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "FileRef":
        """A FILE value from SQL (a dict of its fields, as Arrow's ``to_pylist`` gives it)."""
        return cls(**{name: row.get(name) for name, _, _ in FILE_FIELDS})

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name, _, _ in FILE_FIELDS}

    @property
    def label(self) -> str:
        return f"{self.stage}/{self.relative_path}"

    @property
    def stage_name(self) -> str:
        """The stage's name as the catalog knows it (no '@')."""
        return self.stage.lstrip("@")


def file_refs(column: pa.Array) -> list[FileRef | None]:
    """The FILE values of an Arrow ``file`` column, from only the fields a read checks (stage, path, size,
    etag: one Arrow field each, not every struct turned into a dict); None where there is no file named."""
    valid = column.is_valid().to_pylist()
    fields = [pc.struct_field(column, name).to_pylist() for name in ("stage", "relative_path", "size", "etag")]
    return [
        FileRef(stage, path, size, etag, None, None) if ok and stage is not None and path is not None else None
        for ok, stage, path, size, etag in zip(valid, *fields)
    ]


def content_type(relative_path: str) -> str | None:
    """The media type a file's name implies (``image/jpeg``; HEIC and DICOM included), or None."""
    lowered = relative_path.lower()
    if lowered.endswith((".heic", ".heif")):
        return "image/heic"
    if lowered.endswith(".dcm"):
        return "application/dicom"
    return mimetypes.guess_type(lowered)[0]


def to_file(stages: StageCatalog, stage_ref: str, relative_path: str) -> FileRef:
    """The FILE value of ``relative_path`` in ``stage_ref`` ('@stage' or '@stage/prefix'), read now."""
    name, prefix = split_stage_ref(stage_ref)
    path = f"{prefix.rstrip('/')}/{relative_path}" if prefix else relative_path
    return FileRef.of(name, stages.get(name).stat(path))


def check_file(stage: Stage, ref: FileRef) -> None:
    """Raise :class:`~sightql.errors.StageFileChangedError` unless the file still has ``ref``'s size and etag
    (a missing or unreadable file raises :class:`~sightql.errors.StageError`); reads no bytes."""
    unchanged(ref, stage.stat(ref.relative_path))


def unchanged(ref: FileRef, now: StageFile) -> None:
    """Raise :class:`~sightql.errors.StageFileChangedError` unless ``now`` has ``ref``'s size and etag."""
    if now.size != ref.size or (ref.etag is not None and now.etag != ref.etag):
        raise StageFileChangedError(
            f"{ref.label} changed since this FILE value was made ({ref.size} bytes, etag {ref.etag}; now "
            f"{now.size} bytes, etag {now.etag}); make the value again with to_file() or reload the table"
        )


def read_file(stage: Stage, ref: FileRef) -> bytes:
    """The bytes ``ref`` names, checked to be the recorded ones (size and etag; see :meth:`Stage.read_checked`)."""
    return stage.read_checked(ref.relative_path, lambda now: unchanged(ref, now))


def read_ref(stages: StageCatalog, ref: FileRef | None) -> bytes | None:
    """The bytes of ``ref``'s file in its stage (None for None); a missing, changed or forbidden file raises
    that row's StageError."""
    return None if ref is None else read_file(stages.get(ref.stage_name), ref)


def read_ref_or_none(stages: StageCatalog, ref: FileRef | None) -> bytes | None:
    """:func:`read_ref`, or None where the file is gone, changed, forbidden or unreadable (for showing, not predicting)."""
    try:
        return read_ref(stages, ref)
    except (SightQLError, OSError):  # a missing stage or s3 extra too: whatever keeps it from being shown
        return None


def file_reads(stages: Callable[[str], Stage], budget: ReadBudget) -> BudgetedRead:
    """How FILE values are read wherever they are decoded (SQL functions, predict, training): checked
    against the recorded size and etag, and holding ``budget`` for their recorded size until decoded.
    ``stages`` finds a stage by name (``StageCatalog.get``, or a worker's own lookup)."""

    def read(ref: FileRef | None) -> bytes | None:
        if ref is None:
            return None
        try:
            return read_file(stages(ref.stage_name), ref)
        except OSError as exc:
            raise StageError(f"cannot read {ref.label}: {exc}") from None

    return BudgetedRead(read, lambda ref: 0 if ref is None else int(ref.size or 0), budget)
