"""The SQL table functions of image search, registered on the session's connection:

* ``similar_images(table, query, k)`` (``k`` defaults to 10): the ``k`` indexed rows nearest ``query``, a
  BLOB (image bytes), a FILE value, or VARCHAR (``'@stage/path'``, else a text for a zero-shot index),
  as rows ``(key VARCHAR, distance DOUBLE, rank INTEGER)``, nearest first;
* ``near_duplicates(table, threshold)`` (``threshold`` defaults to 0.1): pairs ``(key_a VARCHAR, key_b
  VARCHAR, distance DOUBLE)`` at most ``threshold`` apart (cosine distance), ``key_a < key_b``.

Each is a TEMP table macro over an Arrow UDF returning a list of structs (as ``directory()`` is), with
typed overloads for the query's type. Keys come back as text (a table's key may be of any type): join
with ``ON p.id::VARCHAR = s.key``. The UDFs read the index through cursors of their own, never the
connection running the query.
"""

from __future__ import annotations

from typing import Any, Callable

import duckdb
import pyarrow as pa
from duckdb import sqltypes as T

from sightql.functions.image_args import COMMON
from sightql.search.embedder import TextQuery
from sightql.registry import Registry
from sightql.search.indexes import SearchIndexes
from sightql.sql.file_type import FILE_SQL
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.stages.files import FileRef

SIMILAR_ARROW = pa.list_(pa.struct([("key", pa.string()), ("distance", pa.float64()), ("rank", pa.int32())]))
PAIRS_ARROW = pa.list_(pa.struct([("key_a", pa.string()), ("key_b", pa.string()), ("distance", pa.float64())]))
DEFAULT_K = 10
DEFAULT_THRESHOLD = 0.1
_QUERY_TYPES = {"blob": "BLOB", "file": FILE_SQL, "text": "VARCHAR"}


def _text_keys(values: pa.Array) -> list[str | None]:
    return [None if v is None else str(v) for v in values.to_pylist()]


def similar_body(indexes: SearchIndexes, kind: str) -> Callable[..., pa.Array]:
    def body(tables: pa.ChunkedArray, queries: pa.ChunkedArray, ks: pa.ChunkedArray) -> pa.Array:
        rows: list[list[dict[str, Any]] | None] = []
        for table, query, k in zip(tables.to_pylist(), queries.to_pylist(), ks.to_pylist()):
            if table is None or query is None or k is None:
                rows.append(None)
                continue
            if kind == "file":
                query = FileRef.from_row(query)
            found = indexes.similar_images(table, query if kind != "text" or query.startswith("@") else TextQuery(query), k)
            rows.append([{"key": key, "distance": distance, "rank": rank} for key, distance, rank in
                         zip(_text_keys(found.column("key")), found.column("distance").to_pylist(),
                             found.column("rank").to_pylist())])
        return pa.array(rows, type=SIMILAR_ARROW)

    return body


def near_duplicates_body(indexes: SearchIndexes) -> Callable[..., pa.Array]:
    def body(tables: pa.ChunkedArray, thresholds: pa.ChunkedArray) -> pa.Array:
        rows: list[list[dict[str, Any]] | None] = []
        for table, threshold in zip(tables.to_pylist(), thresholds.to_pylist()):
            if table is None or threshold is None:
                rows.append(None)
                continue
            pairs = indexes.near_duplicates(table, threshold)
            rows.append([{"key_a": a, "key_b": b, "distance": d} for a, b, d in
                         zip(_text_keys(pairs.column("key_a")), _text_keys(pairs.column("key_b")),
                             pairs.column("distance").to_pylist())])
        return pa.array(rows, type=PAIRS_ARROW)

    return body


def _similar_macro() -> str:
    overloads = []
    for kind, sql_type in _QUERY_TYPES.items():
        select = ("SELECT r.key, r.distance, r.rank FROM (SELECT unnest("
                  f"_sightql_similar_images_{kind}(table_name, query, {{k}})) AS r)")
        overloads.append(f"(table_name VARCHAR, query {sql_type}, k INTEGER) AS TABLE ({select.format(k='k')})")
        overloads.append(f"(table_name VARCHAR, query {sql_type}) AS TABLE ({select.format(k=DEFAULT_K)})")
    return "CREATE OR REPLACE TEMP MACRO similar_images" + ", ".join(overloads)


def _pairs_macro() -> str:
    select = ("SELECT p.key_a, p.key_b, p.distance FROM (SELECT unnest("
              "_sightql_near_duplicates(table_name, {threshold})) AS p)")
    return ("CREATE OR REPLACE TEMP MACRO near_duplicates"
            f"(table_name VARCHAR, threshold DOUBLE) AS TABLE ({select.format(threshold='threshold')}), "
            f"(table_name VARCHAR) AS TABLE ({select.format(threshold=f'{DEFAULT_THRESHOLD}::DOUBLE')})")


def register_search_functions(con: Any, indexes: SearchIndexes) -> None:
    """``similar_images()`` and ``near_duplicates()`` on ``con`` (again after each reopen of the warehouse)."""
    for kind, sql_type in _QUERY_TYPES.items():
        con.create_function(f"_sightql_similar_images_{kind}", similar_body(indexes, kind),
                            [T.VARCHAR, con.type(sql_type), T.INTEGER], _similar_sql(), **COMMON)
    con.create_function("_sightql_near_duplicates", near_duplicates_body(indexes), [T.VARCHAR, T.DOUBLE],
                        _pairs_sql(), **COMMON)
    con.execute(_similar_macro())
    con.execute(_pairs_macro())


def _similar_sql() -> Any:
    return duckdb.list_type(duckdb.struct_type({"key": T.VARCHAR, "distance": T.DOUBLE, "rank": T.INTEGER}))


def _pairs_sql() -> Any:
    return duckdb.list_type(duckdb.struct_type({"key_a": T.VARCHAR, "key_b": T.VARCHAR, "distance": T.DOUBLE}))


def attach_search(warehouse: Warehouse, registry: Registry, stages: StageCatalog) -> SearchIndexes:
    """The warehouse's indexes, with their SQL functions registered now and again whenever the session's
    connection reopens (after a job released the warehouse)."""
    indexes = SearchIndexes(warehouse, registry, stages)
    register_search_functions(warehouse.connection(), indexes)
    warehouse.on_reopen(lambda con: register_search_functions(con, indexes))
    return indexes
