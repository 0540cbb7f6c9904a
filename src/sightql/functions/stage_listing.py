"""``_sightql_stage_listing(stage_ref)``, the SQL function under ``directory()``.

It lists a stage live, through the stage's own filesystem (never a query on the connection
running the caller's query), and returns LIST(STRUCT(relative_path, file_url, size,
last_modified, etag, stage, content_type)); the ``directory()`` table macro unnests it, orders it
by path and packs each file's FILE value (its ``file`` column) from those fields.
An unknown stage or a path outside the stage fails the query with one sentence.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

import duckdb
import pyarrow as pa
from duckdb import sqltypes as T

from sightql.sql.catalog import DIRECTORY_MACRO
from sightql.stages.catalog import StageCatalog
from sightql.stages.files import FileRef
from sightql.stages.paths import split_stage_ref

LISTING_ARROW = pa.list_(
    pa.struct(
        [
            ("relative_path", pa.string()), ("size", pa.int64()), ("last_modified", pa.timestamp("us", tz="UTC")),
            ("etag", pa.string()), ("file_url", pa.string()), ("stage", pa.string()), ("content_type", pa.string()),
        ]
    )
)
LISTING_SQL = duckdb.list_type(
    duckdb.struct_type(
        {
            "relative_path": T.VARCHAR, "size": T.BIGINT, "last_modified": T.TIMESTAMP_TZ,
            "etag": T.VARCHAR, "file_url": T.VARCHAR, "stage": T.VARCHAR, "content_type": T.VARCHAR,
        }
    )
)


def stage_listing(stages: StageCatalog) -> Callable[[pa.ChunkedArray], pa.Array]:
    """The UDF body: each row's '@stage/prefix' listed once per call; a NULL reference lists nothing."""

    def listing(refs: pa.ChunkedArray) -> pa.Array:
        listed: dict[str, list[dict[str, Any]]] = {}
        rows: list[list[dict[str, Any]] | None] = []
        for ref in refs.to_pylist():
            if ref is None:
                rows.append(None)
                continue
            if ref not in listed:
                name, prefix = split_stage_ref(ref)
                listed[ref] = [
                    {**asdict(f), "stage": file.stage, "content_type": file.content_type}
                    for f in stages.get(name).list(prefix)
                    for file in [FileRef.of(name, f)]
                ]
            rows.append(listed[ref])
        return pa.array(rows, type=LISTING_ARROW)

    return listing


def register_stage_listing(con: Any, stages: StageCatalog) -> None:
    """The listing function, then ``directory()`` over it (DuckDB binds a macro's functions when it is made)."""
    con.create_function(
        "_sightql_stage_listing", stage_listing(stages), [T.VARCHAR], LISTING_SQL,
        type="arrow", null_handling="special", side_effects=True,
    )
    con.execute(DIRECTORY_MACRO)
