"""Where an image table's embedding index is recorded: one row of ``sightql_search_indexes`` per indexed
table, and the index table itself (``_sightql_index_<table>``: the source row key, a fixed-size
``FLOAT[n]`` vector and the bookkeeping incremental refresh needs).

The index table is keyed by the source table's row key (its primary key, else its path column: see
:func:`sightql.inference.row_key.row_key`), so a row re-embedded replaces its vector and a key is never
indexed twice. ``model_version``, ``embed_error`` and ``source_sha256`` (the bytes' sha256, or a FILE
row's identity) are what predict keeps too: a row is current when it holds a vector (or an error) by the
index's model version from the bytes the source row holds now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from sightql.errors import TableError
from sightql.inference.outputs import OutputColumns
from sightql.inference.source import Target
from sightql.sql.identifiers import quote_ident
from sightql.sql.tables import table_columns

INDEXES_DDL = """CREATE TABLE IF NOT EXISTS sightql_search_indexes (
    table_name VARCHAR PRIMARY KEY,
    image_column VARCHAR NOT NULL,
    key_column VARCHAR NOT NULL,
    model_ref VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    dimension INTEGER NOT NULL,
    index_table VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    refreshed_at TIMESTAMPTZ
)"""

# The index table's bookkeeping columns, as predict's outputs of the same meaning (inference/outputs.py).
BOOKKEEPING = (("model_version", "model_version", "VARCHAR"), ("error", "embed_error", "VARCHAR"),
               ("sha256", "source_sha256", "VARCHAR"))
VECTOR = "embedding"


@dataclass(frozen=True)
class IndexRecord:
    """One indexed table: which column, keyed how, embedded by which model into which table."""

    table: str
    image: str
    key: str
    model_ref: str
    model_version: str
    dimension: int
    index_table: str
    refreshed_at: Any = None

    @property
    def quoted_index(self) -> str:
        return quote_ident(self.index_table)

    def target(self) -> Target:
        """The index table as a predict target (not the source; keyed by the source key; only the bookkeeping
        outputs), so predict's plan decides which rows are due (:mod:`sightql.inference.plan`)."""
        return Target(self.index_table, self.quoted_index, False, self.key, OutputColumns(BOOKKEEPING))

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "image": self.image, "key": self.key, "model": self.model_ref,
                "model_version": self.model_version, "dimension": self.dimension, "index_table": self.index_table,
                "refreshed_at": self.refreshed_at}


def index_table_name(table: str) -> str:
    return f"_sightql_index_{table.lower()}"


def ensure_indexes_table(cursor: Any) -> None:
    cursor.execute(INDEXES_DDL)


def _has_catalog(cursor: Any) -> bool:
    return bool(table_columns(cursor, "sightql_search_indexes"))


_COLUMNS = "table_name, image_column, key_column, model_ref, model_version, dimension, index_table, refreshed_at"


def list_records(cursor: Any) -> list[IndexRecord]:
    if not _has_catalog(cursor):
        return []
    rows = cursor.execute(f"SELECT {_COLUMNS} FROM sightql_search_indexes ORDER BY table_name").fetchall()
    return [IndexRecord(*row) for row in rows]


def find_record(cursor: Any, table: str) -> IndexRecord | None:
    """The index of ``table`` (matched case-insensitively, as DuckDB matches names), or None."""
    if not _has_catalog(cursor):
        return None
    rows = cursor.execute(f"SELECT {_COLUMNS} FROM sightql_search_indexes WHERE lower(table_name) = lower(?)",
                          [table]).fetchall()
    return IndexRecord(*rows[0]) if rows else None


def get_record(cursor: Any, table: str) -> IndexRecord:
    """The index of ``table``; one sentence naming the fix when the table or its index is missing."""
    if not isinstance(table, str) or not table:
        raise TableError(f"table must be a table name, not {table!r}")
    record = find_record(cursor, table)
    if record is not None:
        return record
    if not table_columns(cursor, table):
        raise TableError(f"no table named {table!r}; load images first with session.load_images({table!r}, 'folder/')")
    raise TableError(f"table {table!r} has no search index; create one with session.create_index({table!r}) "
                     f"(sightql index create {table})")


def save_record(cursor: Any, record: IndexRecord) -> None:
    """Create the index table if missing and record it (replacing the table's earlier record)."""
    ensure_indexes_table(cursor)
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {record.quoted_index} ({quote_ident(record.key)} {_key_type(cursor, record)} "
        f"PRIMARY KEY, {VECTOR} FLOAT[{int(record.dimension)}], model_version VARCHAR, embed_error VARCHAR, "
        "source_sha256 VARCHAR, embedded_at TIMESTAMPTZ)"
    )
    cursor.execute(
        "INSERT OR REPLACE INTO sightql_search_indexes (table_name, image_column, key_column, model_ref, model_version, "
        "dimension, index_table) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [record.table, record.image, record.key, record.model_ref, record.model_version, record.dimension,
         record.index_table],
    )


def _key_type(cursor: Any, record: IndexRecord) -> str:
    columns = table_columns(cursor, record.table)
    return columns[record.key]


def mark_refreshed(cursor: Any, record: IndexRecord) -> None:
    cursor.execute("UPDATE sightql_search_indexes SET refreshed_at = now(), model_version = ? WHERE table_name = ?",
                   [record.model_version, record.table])


def drop_record(cursor: Any, record: IndexRecord) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {record.quoted_index}")
    cursor.execute("DELETE FROM sightql_search_indexes WHERE table_name = ?", [record.table])


VECTOR_BATCH_ROWS = 8_192  # vectors streamed per Arrow batch (8,192 x 1,280 floats: 42 MB)


def indexed_vectors(cursor: Any, record: IndexRecord) -> tuple[list[Any], np.ndarray, pa.DataType]:
    """Every vector by the index's model version, in key order: (keys, an (n, dimension) array, the key's type).

    The vectors are streamed in batches into one array made for them, and sorted here rather than by an
    ORDER BY: DuckDB materialising 100k 1,280-float rows (512 MB) at once, sorted or as one Arrow table,
    fails at the warehouse's default memory_limit (256 MB; measured by benchmarks/search_ann.py). The count
    and the rows are read in one transaction, so a refresh committing meanwhile cannot make them disagree.
    """
    where = f"FROM {record.quoted_index} WHERE {VECTOR} IS NOT NULL AND model_version = ?"
    cursor.execute("BEGIN TRANSACTION")
    try:
        ((count,),) = cursor.execute(f"SELECT count(*) {where}", [record.model_version]).fetchall()
        reader = cursor.sql(f"SELECT {quote_ident(record.key)} AS key, {VECTOR} AS vector {where}",
                            params=[record.model_version]).to_arrow_reader(VECTOR_BATCH_ROWS)
        vectors = np.empty((count, record.dimension), np.float32)
        keys: list[Any] = []
        for batch in reader:
            rows = len(batch)
            flat = batch.column(1).flatten().to_numpy(zero_copy_only=False)
            vectors[len(keys):len(keys) + rows] = flat.reshape(rows, record.dimension)
            keys += batch.column(0).to_pylist()
        key_type = reader.schema.field("key").type
    finally:
        cursor.execute("COMMIT")
    order = sorted(range(len(keys)), key=keys.__getitem__)
    if order != list(range(len(keys))):
        vectors, keys = vectors[order], [keys[i] for i in order]
    return keys, vectors, key_type
