"""Top-k labels of images in a table, through the ``classify_topk`` SQL function that queries use.

The model runs once per image: ``classify`` (for the error message) runs only on the rows that
``classify_topk`` left NULL.
"""

from __future__ import annotations

from typing import Any, Sequence

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
