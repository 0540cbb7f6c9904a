"""Labelled examples from a table or a stage: a key to read the bytes, a label and a content hash.

Only keys, labels and hashes are held in memory; image bytes are read in small batches
by :mod:`sightql.train.dataset` when a batch needs them.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Protocol, Sequence

from sightql.errors import ImageError, SightQLError, TableError
from sightql.images.decode import probe_image
from sightql.sql.identifiers import quote_ident
from sightql.sql.tables import read_rowids, table_columns
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
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


class TableReader:
    """Bytes by rowid, ``READ_CHUNK`` rows per query on this thread's own cursor."""

    def __init__(self, warehouse: Warehouse, table: str, image: str):
        self.warehouse = warehouse
        self.quoted_table = quote_ident(table, "table name")
        self.quoted_image = quote_ident(image, "column name")
        self.description = table

    def read(self, keys: Sequence[int | str]) -> list[bytes]:
        found: dict[int, bytes] = {}
        with self.warehouse.cursor() as cursor:
            for start in range(0, len(keys), READ_CHUNK):
                chunk = sorted({int(k) for k in keys[start : start + READ_CHUNK]})
                rows = read_rowids(cursor, self.quoted_table, self.quoted_image, chunk)
                found.update(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist()))
        missing = [k for k in keys if int(k) not in found]
        if missing:
            raise SightQLError(
                f"{len(missing)} row(s) of {self.description} vanished during training; do not modify the table while it trains"
            )
        return [found[int(k)] for k in keys]


class StageReader:
    def __init__(self, stages: StageCatalog, stage_name: str):
        self.stage = stages.get(stage_name.lstrip("@"))
        self.description = f"@{stage_name}"

    def read(self, keys: Sequence[int | str]) -> list[bytes]:
        return [self.stage.read_bytes(str(k)) for k in keys]


def table_examples(
    warehouse: Warehouse, table: str, image: str, label: str, split_column: str | None = None
) -> tuple[list[Example], TableReader]:
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
    if columns[image] != "BLOB":
        raise TableError(f"column {image!r} of {table!r} is {columns[image]}, not BLOB; pass the column holding image bytes")
    q_image, q_label = quote_ident(image), quote_ident(label)
    name_sql = quote_ident("relative_path") if "relative_path" in columns else "'row ' || rowid"
    hash_sql = quote_ident("sha256") if "sha256" in columns and image == "image" else f"sha256({q_image})"
    split_sql = f"CAST({quote_ident(split_column)} AS VARCHAR)" if split_column else "NULL"
    with warehouse.cursor() as cursor:
        rows = cursor.execute(
            f"SELECT rowid, CAST({q_label} AS VARCHAR), {hash_sql}, {name_sql}, {split_sql} FROM {q_table} "
            f"WHERE {q_image} IS NOT NULL ORDER BY rowid"
        ).fetchall()
    unlabelled = [r for r in rows if r[1] is None]
    if unlabelled:
        warnings.warn(f"{len(unlabelled)} row(s) of {table} have no {label}; they are left out", stacklevel=3)
    examples = [Example(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows if r[1] is not None]
    if not examples:
        raise TableError(f"table {table!r} has no labelled images; fill the {label!r} column first")
    return examples, TableReader(warehouse, table, image)


def stage_examples(warehouse: Warehouse, stages: StageCatalog, ref: str, label: str
                   ) -> tuple[list[Example], StageReader]:
    """Every image under '@stage/prefix'; with ``label='folder'`` its parent folder names the class."""
    if label != "folder":
        raise SightQLError(f"label={label!r} cannot be read from a stage; use label='folder' (class-named folders)")
    name, prefix = split_stage_ref(ref)
    reader = StageReader(stages, name)
    files = reader.stage.list(prefix)
    examples: list[Example] = []
    skipped: list[str] = []
    for f in files:
        folder = folder_label(f.relative_path)
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
    warehouse: Warehouse, stages: StageCatalog, source: str, image: str, label: str,
    split_column: str | None = None,
) -> tuple[list[Example], ByteReader]:
    """The labelled examples of a table, or of '@stage/prefix', and the reader of their bytes."""
    if source.startswith("@"):
        if split_column:
            raise SightQLError("split_column needs a table source; for a stage use val_fraction, or load it into a table")
        return stage_examples(warehouse, stages, source, label)
    return table_examples(warehouse, source, image, label, split_column)
