"""An image argument of a SQL function: a BLOB (the bytes) or a FILE value (a stage file, read here).

DuckDB registers one Python UDF per name, so each image function is two UDFs,
``_sightql_<fn>_blob`` and ``_sightql_<fn>_file``, under one TEMP macro with typed overloads:
``fn(..., image BLOB)``, ``fn(..., image FILE)`` and ``fn(..., image VARCHAR)`` (a string literal,
cast to BLOB as before). DuckDB expands the macro when it binds the query, so the overloads cost
nothing per row, and a wrong argument fails with DuckDB's own "Candidate macros: ..." list.

A FILE column reaches the UDF as an Arrow struct; only the fields a read needs are taken
(``pc.struct_field``), and the bytes are read in the engine's worker pool beside decoding, one
batch ahead of the model (:func:`sightql.engine.predict_rows`), so a call over 2,048 FILE rows
holds about a batch of images, not 2,048. A read never queries the connection: stages come
from the in-memory :class:`~sightql.stages.catalog.StageCatalog`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import duckdb
import pyarrow as pa

from sightql.engine import parallel_map
from sightql.errors import SightQLError
from sightql.sql.file_type import FILE_ARROW, FILE_SQL, is_file_arrow
from sightql.sql.identifiers import quote_ident
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.stages.files import STAGE_READERS, FileRef, file_refs, to_file

COMMON = {"type": "arrow", "null_handling": "special", "side_effects": False}
# (macro parameter name, SQL type[, default SQL expression]) around the image argument; a parameter with a
# default may be left out or given by name (``model := 'x'``), after the ones without.
Params = Sequence[tuple[str, str] | tuple[str, str, str]]
Hidden = Sequence[tuple[str, str]]  # (SQL expression, SQL type) passed to the UDF after the parameters


def udf_names(sql_name: str) -> tuple[str, str]:
    """The names of the BLOB and the FILE UDF under the macro ``sql_name``."""
    return f"_sightql_{sql_name}_blob", f"_sightql_{sql_name}_file"


def image_macro(sql_name: str, before: Params = (), after: Params = (), hidden: Hidden = ()) -> str:
    """``CREATE OR REPLACE TEMP MACRO sql_name`` with its BLOB, FILE and VARCHAR overloads."""
    blob, file = udf_names(sql_name)

    def overload(image_type: str, udf: str, image: str) -> str:
        params = [*before, ("image", image_type), *after]
        signature = ", ".join(f"{p[0]} {p[1]}" + (f" := {p[2]}" if len(p) > 2 else "") for p in params)
        arguments = ", ".join([*(image if p[0] == "image" else p[0] for p in params), *(e for e, _ in hidden)])
        return f"({signature}) AS {quote_ident(udf)}({arguments})"

    overloads = [overload("BLOB", blob, "image"), overload(FILE_SQL, file, "image"),
                 overload("VARCHAR", blob, "image::BLOB")]
    return f"CREATE OR REPLACE TEMP MACRO {quote_ident(sql_name, 'function name')}" + ", ".join(overloads)


def register_image_function(
    con: Any, sql_name: str, body: Callable[..., pa.Array], returns: Any, before: Params = (), after: Params = (),
    hidden: Hidden = (),
) -> None:
    """``sql_name(..., image, ...)`` taking a BLOB or a FILE: its two UDFs (one ``body``), then the macro.
    ``hidden`` expressions (e.g. ``txid_current()``) reach ``body`` after the parameters."""
    blob, file = udf_names(sql_name)
    types = [duckdb.sqltype(p[1]) for p in before], [duckdb.sqltype(p[1]) for p in (*after, *hidden)]
    for name, image_type in ((blob, "BLOB"), (file, FILE_SQL)):
        con.create_function(name, body, [*types[0], duckdb.sqltype(image_type), *types[1]], returns, **COMMON)
    con.execute(image_macro(sql_name, before, after, hidden))


def remove_image_function(con: Any, sql_name: str) -> None:
    """Undo :func:`register_image_function` (whatever part of it exists)."""
    con.execute(f"DROP MACRO IF EXISTS temp.main.{quote_ident(sql_name, 'function name')}")
    for name in udf_names(sql_name):
        try:
            con.remove_function(name)
        except duckdb.Error:
            pass


# ---- FILE values in a UDF -------------------------------------------------------------------
def is_file_column(images: pa.ChunkedArray) -> bool:
    return is_file_arrow(images.type)


def chosen_file_refs(images: pa.ChunkedArray, rows: list[int]) -> list[FileRef | None]:
    """The chosen rows' FILE values (see :func:`sightql.stages.files.file_refs`)."""
    chosen = images.take(pa.array(rows, pa.int64())) if len(rows) != len(images) else images
    return file_refs(chosen.combine_chunks() if isinstance(chosen, pa.ChunkedArray) else chosen)


def to_file_function(warehouse: Warehouse, stages: StageCatalog) -> Callable[[pa.ChunkedArray, pa.ChunkedArray], pa.Array]:
    """The body of ``to_file('@stage[/prefix]', relative_path) -> FILE``: the file as it is now (size,
    etag, ...); a missing or forbidden file gives NULL, or fails the query when on_error='raise'."""

    def make(pair: tuple[str | None, str | None]) -> dict[str, Any] | None:
        stage_ref, path = pair
        if stage_ref is None or path is None:
            return None
        try:
            return to_file(stages, stage_ref, path).as_row()
        except SightQLError:
            if warehouse.on_error == "raise":
                raise
            return None

    def to_file_values(refs: pa.ChunkedArray, paths: pa.ChunkedArray) -> pa.Array:
        pairs = list(zip(refs.to_pylist(), paths.to_pylist()))
        return pa.array(parallel_map(make, pairs, max(STAGE_READERS, warehouse.settings.decode_threads)), type=FILE_ARROW)

    return to_file_values
