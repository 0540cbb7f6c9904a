"""Top-k labels of images in a table, through the ``classify_topk`` SQL function that queries use.

The model runs once per image: ``classify`` (for the error message) runs only on the rows that
``classify_topk`` left NULL.
"""

from __future__ import annotations

from typing import Any, Sequence

import pyarrow as pa

from sightql.errors import ConfigError
from sightql.registry import Registry
from sightql.registry.specs import card_of, check_classifier
from sightql.sql.identifiers import quote_ident
from sightql.sql.warehouse import Warehouse

_TOPK_SQL = """SELECT {key} AS key, top, CASE WHEN top IS NULL THEN classify($model, image).error END AS error
FROM (SELECT {key}, image, classify_topk($model, image, $k) AS top FROM {source} {where})
ORDER BY {key}"""


def top_k_sql(source: str, key: str, where: str = "") -> str:
    """SQL giving (key, top, error) per row of ``source``; binds ``$model`` and ``$k`` (and ``where``'s own)."""
    return _TOPK_SQL.format(source=source, key=key, where=where)


def classify_stored(
    warehouse: Warehouse, table: str, relative_paths: Sequence[str], model: str = "imagenet", k: int = 5
) -> dict[str, dict[str, Any]]:
    """``{relative_path: {"top": [{label, score}, ...] or None, "error": str or None}}`` for those rows."""
    query = top_k_sql(quote_ident(table, "table name"), "relative_path", "WHERE list_contains($paths, relative_path)")
    rows = warehouse.sql(query, {"model": model, "k": k, "paths": list(relative_paths)}).to_pylist()
    return {row["key"]: {"top": row["top"], "error": row["error"]} for row in rows}


def classify_images(
    warehouse: Warehouse, registry: Registry, images: Sequence[bytes], model: str, k: int
) -> list[dict[str, Any]]:
    """Top-``k`` labels of each image (bytes), through the same SQL functions as queries use (see Session.classify).

    ``model`` is resolved once, to the exact version that then answers every image.
    """
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a whole number of at least 1, got {k!r}; pass e.g. k=5")
    spec = registry.spec(model)
    check_classifier(card_of(spec), spec.model_version)
    exact = spec.builtin or spec.model_version
    table = pa.table({"i": list(range(len(images))), "image": pa.array(list(images), pa.binary())})
    con = warehouse.connection()
    con.register("_sightql_classify_input", table)
    try:
        rows = warehouse.sql(top_k_sql("_sightql_classify_input", "i"), {"model": exact, "k": k}).to_pylist()
    finally:
        con.unregister("_sightql_classify_input")
    return [{"top": r["top"], "error": r["error"], "model_version": spec.model_version} for r in rows]
