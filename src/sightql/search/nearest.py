"""Nearest images and near-duplicate pairs over an index: exact for small indexes, approximate for large ones.

Distances are cosine distances, ``1 - cos(a, b)``: 0 for the same direction, up to 2. Exact search is
one DuckDB query over the fixed-size vectors (``array_cosine_distance``); near-duplicates exactly are a
blocked matrix product in NumPy (every pair, a block of rows at a time). Above ``search_exact_rows``
vectors (or with ``approximate=True``) both go through the faiss HNSW index
(:mod:`sightql.search.approximate`). Only rows embedded by the index's current model version count.
Every read takes a cursor of its own, so the SQL functions can run these inside a query.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from sightql.errors import ConfigError
from sightql.search.approximate import approximate_index, unit_rows
from sightql.search.catalog import VECTOR, IndexRecord, indexed_vectors
from sightql.sql.identifiers import quote_ident
from sightql.sql.warehouse import Warehouse

MAX_K = 10_000
PAIR_BLOCK = 1024  # rows per block of the exact near-duplicate product: 1024 x n floats at a time
NEIGHBOURS = 32  # candidates per row that the approximate near-duplicate search looks at


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise ConfigError(f"k must be a whole number from 1 to {MAX_K:,}, not {k!r}")
    return int(k)


def check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 2:
        raise ConfigError(f"threshold is a cosine distance from 0 to 2 (e.g. 0.1), not {threshold!r}")
    return float(threshold)


def indexed_rows(cursor: Any, record: IndexRecord) -> int:
    return cursor.execute(f"SELECT count(*) FROM {record.quoted_index} WHERE {VECTOR} IS NOT NULL AND model_version = ?",
                          [record.model_version]).fetchall()[0][0]


def use_approximate(warehouse: Warehouse, cursor: Any, record: IndexRecord, approximate: bool | None) -> bool:
    if approximate is not None:
        return bool(approximate)
    return indexed_rows(cursor, record) > warehouse.settings.search_exact_rows


def _result(keys: list[Any], distances: list[float], key_type: pa.DataType) -> pa.Table:
    return pa.table({"key": pa.array(keys, key_type), "distance": pa.array(distances, pa.float64()),
                     "rank": pa.array(range(1, len(keys) + 1), pa.int32())})


def key_type(cursor: Any, record: IndexRecord) -> pa.DataType:
    return cursor.sql(f"SELECT {quote_ident(record.key)} FROM {record.quoted_index} LIMIT 0").to_arrow_table(
    ).schema.field(0).type


def similar(warehouse: Warehouse, record: IndexRecord, vector: np.ndarray, k: int, approximate: bool | None = None,
            exclude: Any = None) -> pa.Table:
    """The ``k`` indexed rows nearest ``vector``: (key, distance, rank), nearest first (ties by key).
    ``exclude`` leaves out one key (the query row itself)."""
    k = check_k(k)
    vector = np.asarray(vector, np.float32).reshape(-1)
    if vector.shape[0] != record.dimension:
        raise ConfigError(f"the query gives {vector.shape[0]} numbers and the index of {record.table!r} holds "
                          f"{record.dimension}; query it with the index's model {record.model_ref!r}")
    wanted = k + (exclude is not None)
    with warehouse.cursor() as cursor:
        kind = key_type(cursor, record)
        if use_approximate(warehouse, cursor, record, approximate):
            found = approximate_index(warehouse.home, cursor, record)
            distances, positions = found.search(vector[None, :], wanted, warehouse.settings.search_ef)
            pairs = [(found.keys[p], float(d)) for p, d in zip(positions[0], distances[0]) if p >= 0]
        else:
            key = quote_ident(record.key)
            rows = cursor.execute(
                f"SELECT {key}, array_cosine_distance({VECTOR}, ?::FLOAT[{int(record.dimension)}]) AS distance "
                f"FROM {record.quoted_index} WHERE {VECTOR} IS NOT NULL AND model_version = ? "
                f"ORDER BY distance, {key} LIMIT {int(wanted)}",
                [vector.tolist(), record.model_version],
            ).fetchall()
            pairs = [(row[0], float(row[1])) for row in rows]
    pairs = [pair for pair in pairs if exclude is None or pair[0] != exclude][:k]
    return _result([p[0] for p in pairs], [p[1] for p in pairs], kind)


def near_duplicates(warehouse: Warehouse, record: IndexRecord, threshold: float, approximate: bool | None = None
                    ) -> pa.Table:
    """Every pair of indexed rows at most ``threshold`` apart: (key_a, key_b, distance) with key_a < key_b
    (in the keys' own order), closest pairs first."""
    threshold = check_threshold(threshold)
    with warehouse.cursor() as cursor:
        keys, vectors, kind = indexed_vectors(cursor, record)
        if use_approximate(warehouse, cursor, record, approximate):
            found = approximate_index(warehouse.home, cursor, record)
            positions_of = {key: i for i, key in enumerate(keys)}
            distances, neighbours = found.search(vectors, min(NEIGHBOURS, max(1, len(keys))), warehouse.settings.search_ef)
            candidates = [(i, positions_of[found.keys[p]], float(d)) for i in range(len(keys))
                          for p, d in zip(neighbours[i], distances[i]) if p >= 0 and d <= threshold]
        else:
            candidates = _exact_pairs(unit_rows(vectors), threshold)
    best: dict[tuple[int, int], float] = {}
    for i, j, distance in candidates:
        if i != j:
            pair = (i, j) if i < j else (j, i)  # keys are sorted, so position order is key order
            best[pair] = min(distance, best.get(pair, distance))
    ordered = sorted(best.items(), key=lambda item: (item[1], item[0]))
    return pa.table({
        "key_a": pa.array([keys[i] for (i, _), _ in ordered], kind),
        "key_b": pa.array([keys[j] for (_, j), _ in ordered], kind),
        "distance": pa.array([max(0.0, d) for _, d in ordered], pa.float64()),
    })


def _exact_pairs(unit: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    pairs: list[tuple[int, int, float]] = []
    for start in range(0, len(unit), PAIR_BLOCK):
        block = 1.0 - unit[start : start + PAIR_BLOCK] @ unit[start:].T  # only pairs (i, j >= start)
        rows, columns = np.nonzero(block <= threshold)
        for r, c in zip(rows.tolist(), columns.tolist()):
            i, j = start + r, start + c
            if i < j:
                pairs.append((i, j, float(block[r, c])))
    return pairs
