"""``store_images``: images that arrive as bytes (a browser upload, an API body) into an image table.

The table is an ordinary image table (the one ``load_images`` makes), so everything that reads
images from tables works on it: a new table keeps its images in the warehouse's internal stage
(FILE values, as ``load_images`` does by default), an existing table keeps its own form (BLOB or
FILE). Storing is idempotent by content: bytes whose sha256 is already in the table are not stored
again, so a page that reruns on every click never inserts twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Sequence

import pyarrow as pa

from sightql.errors import ImageError
from sightql.ingest.rows import checked_row, insert_rows, prepare_image_table
from sightql.sql.file_type import is_file_arrow
from sightql.sql.identifiers import quote_ident
from sightql.sql.warehouse import Warehouse
from sightql.sql.write_budget import WriteBudget
from sightql.stages.catalog import StageCatalog
from sightql.stages.files import file_refs, read_ref_or_none
from sightql.stages.internal import store_image


_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class StoredImage:
    """One accepted image: the name it came with, the row it lives in, and whether this call added it."""

    name: str
    relative_path: str
    sha256: str
    new: bool


@dataclass
class StoreReport:
    table: str
    stored: list[StoredImage] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def added(self) -> list[StoredImage]:
        return [image for image in self.stored if image.new]

    def __str__(self) -> str:
        lines = [
            f"stored {len(self.added)} new image(s) in {self.table}; "
            f"{len(self.stored) - len(self.added)} already there; skipped {len(self.skipped)}"
        ]
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


def upload_name(name: str) -> str:
    """The last path part of a client-supplied file name, without control characters; 'upload' if empty."""
    cleaned = _UNSAFE_NAME_CHARS.sub("", name.replace("\\", "/")).rsplit("/", 1)[-1].strip()
    return cleaned if cleaned not in ("", ".", "..") else "upload"


def _free_path(name: str, sha256: str, taken: set[str]) -> str:
    """``name``, or ``stem-<sha256[:8]>.ext`` when another image already has that path."""
    if name not in taken:
        return name
    pure = PurePosixPath(name)
    return f"{pure.stem}-{sha256[:8]}{pure.suffix}"


def store_images(
    warehouse: Warehouse, stages: StageCatalog, table: str, items: Sequence[tuple[str, bytes]]
) -> StoreReport:
    """Check each ``(name, bytes)`` and add the new ones to ``table`` (created if missing) in one transaction.

    Each image passes the warehouse's size and header checks; a bad one is listed in ``skipped``
    with the reason and the rest are stored. An image whose sha256 is already in the table is
    reported with its existing row and not inserted again. A name already used by different
    bytes gets ``-<sha256[:8]>`` before its extension, so no stored image is ever replaced.
    """
    with warehouse.cursor() as cursor:
        quoted, by_reference = prepare_image_table(cursor, table, inline=False)
    report = StoreReport(table)
    checked: list[tuple[str, dict[str, Any]]] = []
    for raw_name, data in items:
        name = upload_name(raw_name)
        try:
            checked.append((name, checked_row(name, len(data), lambda d=data: d, warehouse.limits)))
        except ImageError as exc:
            report.skipped.append((name, str(exc)))
    if not checked:
        return report
    hashes = sorted({row["sha256"] for _, row in checked})
    with warehouse.transaction() as cursor:
        existing = dict(
            cursor.execute(
                f"SELECT sha256, min(relative_path) FROM {quoted} WHERE list_contains(?, sha256) GROUP BY sha256",
                [hashes],
            ).fetchall()
        )
        taken = {
            path for (path,) in cursor.execute(
                f"SELECT relative_path FROM {quoted} WHERE list_contains(?, relative_path)",
                [[name for name, _ in checked]],
            ).fetchall()
        }
        new_rows = []
        for name, row in checked:
            sha = row["sha256"]
            if sha in existing:
                report.stored.append(StoredImage(name, existing[sha], sha, False))
                continue
            row["relative_path"] = _free_path(name, sha, taken)
            taken.add(row["relative_path"])
            existing[sha] = row["relative_path"]
            new_rows.append(row)
            report.stored.append(StoredImage(name, row["relative_path"], sha, True))
        if new_rows and by_reference:  # bytes into the internal stage (kept once by content), references into rows
            internal = stages.internal()
            for row in new_rows:
                row["image"] = store_image(internal, row["image"], row["sha256"], row["format"]).as_row()
            insert_rows(cursor, quoted, new_rows, by_reference=True)
        elif new_rows:
            budget = WriteBudget.of(cursor, warehouse.settings)
            budget.check_table(cursor, quoted, table, [(row["relative_path"], row["size"]) for row in new_rows])
            insert_rows(cursor, quoted, new_rows)
    return report


STORED_COLUMNS = ("relative_path", "image", "sha256", "width", "height", "format")


def stored_images(
    warehouse: Warehouse, stages: StageCatalog, table: str, relative_paths: Sequence[str],
    columns: Sequence[str] = STORED_COLUMNS,
) -> pa.Table:
    """The rows of ``table`` at ``relative_paths``, in path order, with ``columns``; the ``image`` column
    as bytes (read from the stage for a FILE table; None where the file cannot be read)."""
    quoted = quote_ident(table, "table name")
    selected = ", ".join(quote_ident(column, "column name") for column in columns)
    rows = warehouse.sql(
        f"SELECT {selected} FROM {quoted} WHERE list_contains(?, relative_path) ORDER BY relative_path",
        [list(relative_paths)],
    )
    if "image" not in rows.column_names or not is_file_arrow(rows.schema.field("image").type):
        return rows
    refs = file_refs(rows.column("image").combine_chunks())
    return rows.set_column(rows.column_names.index("image"), "image",
                           pa.array([read_ref_or_none(stages, ref) for ref in refs], pa.binary()))
