"""The approximate index of a large embedding index: a faiss HNSW graph over the unit vectors, kept as a file.

Files live under ``<warehouse>/search/<index table>/``: ``<fingerprint>.faiss`` (faiss' own binary
format, read with ``faiss.read_index``: never a pickle) and ``<fingerprint>.keys.parquet`` (the row key of
each position). The fingerprint is of the index table's content (its rows, their keys and when they were
last written), so any refresh that changed the index makes the next search build a new file; older files
are removed then. Files are written under a partial name and renamed into place, so a killed build leaves
nothing a search would read. A loaded index is kept in memory per (folder, fingerprint).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sightql.errors import MissingDependencyError
from sightql.partial_files import partial_path
from sightql.search.catalog import VECTOR, IndexRecord, indexed_vectors
from sightql.sql.identifiers import quote_ident

HNSW_LINKS = 32  # neighbours per node: recall 0.95+ at 100k vectors with efSearch 128
BUILD_EF = 80

_lock = threading.Lock()
_loaded: dict[tuple[str, str], "Approximate"] = {}


def faiss_module() -> Any:
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError("faiss-cpu", "search") from None
    return faiss


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays zero), so inner product is cosine similarity."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def fingerprint(cursor: Any, record: IndexRecord) -> str:
    """What the index table holds now, in a few numbers (one aggregate query, no vector read)."""
    row = cursor.execute(
        f"SELECT count(*), max(embedded_at)::VARCHAR, bit_xor(hash({_key(record)}, embedded_at)) FROM {record.quoted_index} "
        f"WHERE {VECTOR} IS NOT NULL AND model_version = ?", [record.model_version],
    ).fetchall()[0]
    return hashlib.sha256(repr((record.model_version, *row)).encode()).hexdigest()[:24]


def _key(record: IndexRecord) -> str:
    return quote_ident(record.key)


@dataclass
class Approximate:
    index: Any  # faiss.Index over unit vectors, inner product
    keys: list[Any]

    def search(self, queries: np.ndarray, k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        """(cosine distances, positions) of the ``k`` nearest, per query row; position -1 where fewer exist."""
        faiss = faiss_module()
        params = faiss.SearchParametersHNSW(efSearch=max(ef, k))
        similarity, positions = self.index.search(unit_rows(queries), k, params=params)
        return 1.0 - similarity, positions


def folder_of(home: Path, record: IndexRecord) -> Path:
    return home / "search" / record.index_table


def approximate_index(home: Path, cursor: Any, record: IndexRecord) -> Approximate:
    """The approximate index of what ``record``'s index table holds now: loaded, or built and saved first."""
    folder = folder_of(home, record)
    current = fingerprint(cursor, record)
    with _lock:
        cached = _loaded.get((str(folder), current))
        if cached is not None:
            return cached
        index_file, keys_file = folder / f"{current}.faiss", folder / f"{current}.keys.parquet"
        faiss = faiss_module()
        if index_file.is_file() and keys_file.is_file():
            found = Approximate(faiss.read_index(str(index_file)), pq.read_table(keys_file).column("key").to_pylist())
        else:
            found = _build(cursor, record, faiss)
            _save(found, folder, current, faiss)
        _loaded.clear()  # one index in memory per process: a 1M-vector graph is gigabytes
        _loaded[(str(folder), current)] = found
        return found


def _build(cursor: Any, record: IndexRecord, faiss: Any) -> Approximate:
    keys, vectors, _ = indexed_vectors(cursor, record)
    index = faiss.IndexHNSWFlat(record.dimension, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = BUILD_EF
    if len(vectors):
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        index.add(np.divide(vectors, np.where(norms > 0, norms, 1.0), out=vectors))  # in place: no second copy
    return Approximate(index, keys)


def _save(found: Approximate, folder: Path, current: str, faiss: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    index_file, keys_file = folder / f"{current}.faiss", folder / f"{current}.keys.parquet"
    keys_tmp, index_tmp = partial_path(keys_file), partial_path(index_file)
    try:
        pq.write_table(pa.table({"key": found.keys}), keys_tmp)
        faiss.write_index(found.index, str(index_tmp))
        os.replace(keys_tmp, keys_file)  # keys first: an index file is only read beside its keys
        os.replace(index_tmp, index_file)
    finally:
        keys_tmp.unlink(missing_ok=True)
        index_tmp.unlink(missing_ok=True)
    for old in folder.iterdir():
        if not old.name.startswith(current):
            old.unlink(missing_ok=True)


def remove_files(home: Path, record: IndexRecord) -> None:
    """Forget the approximate index of a dropped index (its files and what is in memory)."""
    folder = folder_of(home, record)
    with _lock:
        for key in [k for k in _loaded if k[0] == str(folder)]:
            del _loaded[key]
    if folder.is_dir():
        for old in folder.iterdir():
            old.unlink(missing_ok=True)
        folder.rmdir()
