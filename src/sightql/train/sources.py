"""Labelled examples from a table or a stage: a key to read the bytes, a label and a content hash.

Only keys, labels and hashes are held in memory; image bytes are read in small batches
by :mod:`sightql.train.dataset` when a batch needs them.

A table whose image column holds FILE values trains as a BLOB table does: a batch's FILE values
are read by rowid in one short cursor, and each file's bytes are read from its stage where it
is decoded, in the engine's pool, within the process's read budget (no cursor held meanwhile).
Its examples' identity (what the split keeps together) is the table's ``sha256`` column when it
has one, else the value's ``file:<size>:<etag>`` (as predict records it). Files that are gone or
changed when training plans are left out with a warning, as unreadable staged images are; one
that goes or changes while training runs is left out of its batch with a warning.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from sightql.engine import BudgetedRead, parallel_map, read_budget
from sightql.errors import ImageError, SightQLError, TableError
from sightql.images.decode import probe_image
from sightql.sql.file_type import is_file_arrow, is_file_type
from sightql.sql.identifiers import quote_ident
from sightql.sql.tables import read_rowids, table_columns
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.stages.files import STAGE_READERS, FileRef, check_file, file_refs, file_reads
from sightql.stages.paths import folder_label, split_stage_ref


READ_CHUNK = 64  # rows per query when reading image bytes


@dataclass(frozen=True)
class Example:
    key: int | str  # table rowid, or a path in the stage
    label: str
    sha256: str
    name: str  # what a person calls it in messages: relative_path, or 'row 12'
    split: str | None = None  # the split column's value, when one is used


class ByteReader(Protocol):
    description: str

    def read(self, keys: Sequence[int | str]) -> list[bytes]: ...


def _by_rowid(warehouse: Warehouse, quoted_table: str, column_sql: str, keys: Sequence[int | str],
              description: str) -> list[Any]:
    """One column's values at the rowids ``keys``, in their order, ``READ_CHUNK`` rows per query, in one
    short cursor; a row gone since planning fails the run with one sentence."""
    found: dict[int, Any] = {}
    with warehouse.cursor() as cursor:
        for start in range(0, len(keys), READ_CHUNK):
            chunk = sorted({int(k) for k in keys[start : start + READ_CHUNK]})
            rows = read_rowids(cursor, quoted_table, column_sql, chunk)
            column = rows.column(1).combine_chunks()
            values = file_refs(column) if is_file_arrow(column.type) else column.to_pylist()
            found.update(zip(rows.column(0).to_pylist(), values))
    missing = [k for k in keys if int(k) not in found]
    if missing:
        raise SightQLError(
            f"{len(missing)} row(s) of {description} vanished during training; do not modify the table while it trains"
        )
    return [found[int(k)] for k in keys]


class TableReader:
    """Bytes by rowid, ``READ_CHUNK`` rows per query on a short cursor of its own."""

    def __init__(self, warehouse: Warehouse, table: str, image: str):
        self.warehouse = warehouse
        self.quoted_table = quote_ident(table, "table name")
        self.quoted_image = quote_ident(image, "column name")
        self.description = table

    def read(self, keys: Sequence[int | str]) -> list[bytes]:
        return _by_rowid(self.warehouse, self.quoted_table, self.quoted_image, keys, self.description)


class FileTableReader(TableReader):
    """A table of FILE values: :meth:`refs` reads a batch's values by rowid; ``reads`` turns each into its
    bytes within the process's read budget, where it is decoded (:mod:`sightql.train.dataset`)."""

    def __init__(self, warehouse: Warehouse, stages: StageCatalog, table: str, image: str):
        super().__init__(warehouse, table, image)
        self.reads: BudgetedRead = file_reads(stages.get, read_budget(warehouse.settings.read_budget_bytes))

    def refs(self, keys: Sequence[int | str]) -> list[FileRef | None]:
        return _by_rowid(self.warehouse, self.quoted_table, self.quoted_image, keys, self.description)

    def read(self, keys: Sequence[int | str]) -> list[bytes]:
        """The files' bytes, all at once (copying the rows for torchrun's ranks, a chunk at a time)."""
        return parallel_map(self.reads.read, self.refs(keys), STAGE_READERS)  # type: ignore[arg-type]


class StageReader:
    def __init__(self, stages: StageCatalog, stage_name: str):
        self.stage = stages.get(stage_name.lstrip("@"))
        self.description = f"@{stage_name}"

    def read(self, keys: Sequence[int | str]) -> list[bytes]:
        return [self.stage.read_bytes(str(k)) for k in keys]


def table_examples(
    warehouse: Warehouse, table: str, image: str, label: str | None, split_column: str | None = None,
    stages: StageCatalog | None = None,
) -> tuple[list[Example], TableReader]:
    """The labelled rows of ``table`` and their reader; a FILE image column needs ``stages``.
    ``label=None``: every row with an image, each labelled ``''`` (a dataset without labels)."""
    q_table = quote_ident(table, "table name")  # a name that cannot be a table is refused with its own sentence
    with warehouse.cursor() as cursor:
        columns = table_columns(cursor, table)
    if not columns:
        raise TableError(f"table {table!r} does not exist; load images with session.load_images({table!r}, ...)")
    for role, column in (("image", image), ("label", label), ("split", split_column)):
        if column is not None and column not in columns:
            raise TableError(
                f"table {table!r} has no {role} column {column!r}; its columns are: {', '.join(columns)}"
            )
    is_file = is_file_type(columns[image])
    if columns[image] != "BLOB" and not is_file:
        raise TableError(
            f"column {image!r} of {table!r} is {columns[image]}, not BLOB or file; pass the column holding images"
        )
    q_image = quote_ident(image)
    label_sql = f"CAST({quote_ident(label)} AS VARCHAR)" if label is not None else "''"
    if "relative_path" in columns:
        name_sql = quote_ident("relative_path")
    else:
        name_sql = f"{q_image}.stage || '/' || {q_image}.relative_path" if is_file else "'row ' || rowid"
    if "sha256" in columns and image == "image":
        hash_sql = quote_ident("sha256")
    elif is_file:  # the value's recorded identity, as predict keys a FILE row (no bytes read)
        hash_sql = f"'file:' || {q_image}.size || ':' || coalesce({q_image}.etag, 'None')"
    else:
        hash_sql = f"sha256({q_image})"
    split_sql = f"CAST({quote_ident(split_column)} AS VARCHAR)" if split_column else "NULL"
    file_sql = f", {q_image}" if is_file else ""
    with warehouse.cursor() as cursor:
        rows = cursor.sql(
            f"SELECT rowid, {label_sql}, {hash_sql}, {name_sql}, {split_sql}{file_sql} FROM {q_table} "
            f"WHERE {q_image} IS NOT NULL ORDER BY rowid"
        ).to_arrow_table()
    refs = file_refs(rows.column(5).combine_chunks()) if is_file else None
    columns_read = [rows.column(i).to_pylist() for i in range(5)]
    rows_read = list(zip(*columns_read))
    unlabelled = [r for r in rows_read if r[1] is None]
    if unlabelled:
        warnings.warn(f"{len(unlabelled)} row(s) of {table} have no {label}; they are left out", stacklevel=3)
    examples = [Example(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows_read if r[1] is not None]
    reader: TableReader = TableReader(warehouse, table, image)
    if refs is not None:
        if stages is None:
            raise SightQLError(f"column {image!r} of {table!r} holds FILE values; training it needs the stage catalog")
        refs_of = {int(r[0]): ref for r, ref in zip(rows_read, refs)}
        examples = _files_still_there(examples, refs_of, stages, table)
        reader = FileTableReader(warehouse, stages, table, image)
    if not examples:
        if label is None:
            raise TableError(f"table {table!r} has no images in its {image!r} column; load images into it first")
        raise TableError(f"table {table!r} has no labelled images; fill the {label!r} column first")
    return examples, reader


def _files_still_there(examples: list[Example], refs: dict[int, FileRef | None], stages: StageCatalog,
                       table: str) -> list[Example]:
    """The examples whose files are still as their FILE values recorded them (a stat each, in parallel,
    no bytes read); the others are left out with one warning naming the first few."""

    def problem(example: Example) -> str | None:
        ref = refs[int(example.key)]
        try:
            if ref is not None:
                check_file(stages.get(ref.stage_name), ref)
            return None
        except (SightQLError, OSError) as exc:
            return f"{example.name} ({exc})"

    problems = parallel_map(problem, examples, STAGE_READERS)
    left_out = [p for p in problems if p is not None]
    if left_out:
        warnings.warn(f"{len(left_out)} file(s) of {table} are left out: {'; '.join(left_out[:5])}", stacklevel=4)
    return [e for e, p in zip(examples, problems) if p is None]


def stage_examples(warehouse: Warehouse, stages: StageCatalog, ref: str, label: str | None
                   ) -> tuple[list[Example], StageReader]:
    """Every image under '@stage/prefix'; with ``label='folder'`` its parent folder names the class
    (files outside a class folder are left out); with ``label=None`` every image, each labelled ``''``."""
    if label not in ("folder", None):
        raise SightQLError(f"label={label!r} cannot be read from a stage; use label='folder' (class-named folders)")
    name, prefix = split_stage_ref(ref)
    reader = StageReader(stages, name)
    files = reader.stage.list(prefix)
    examples: list[Example] = []
    skipped: list[str] = []
    for f in files:
        folder = folder_label(f.relative_path) if label is not None else ""
        if folder is None:
            skipped.append(f"{f.relative_path} (not in a class folder)")
            continue
        data = reader.stage.read_bytes(f.relative_path)
        try:
            probe_image(data, warehouse.limits)
        except ImageError as exc:
            skipped.append(f"{f.relative_path} ({exc})")
            continue
        examples.append(Example(f.relative_path, folder, hashlib.sha256(data).hexdigest(), f.relative_path))
    if skipped:
        warnings.warn(f"{len(skipped)} file(s) in {ref} are left out: {'; '.join(skipped[:5])}", stacklevel=3)
    if not examples:
        raise SightQLError(f"no images in class folders under {ref}; put them as {ref}/<label>/<file>.jpg")
    return examples, reader


def load_examples(
    warehouse: Warehouse, stages: StageCatalog, source: str, image: str, label: str | None,
    split_column: str | None = None,
) -> tuple[list[Example], ByteReader]:
    """The labelled examples of a table, or of '@stage/prefix', and the reader of their bytes."""
    if source.startswith("@"):
        if split_column:
            raise SightQLError("split_column needs a table source; for a stage use val_fraction, or load it into a table")
        return stage_examples(warehouse, stages, source, label)
    return table_examples(warehouse, source, image, label, split_column, stages)
