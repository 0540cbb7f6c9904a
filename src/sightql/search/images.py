"""The image bytes of an indexed table's rows, by key, read as the index read them (for showing results)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sightql.errors import SightQLError
from sightql.search.refresh import source_of
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.stages.files import file_refs, read_ref_or_none


def images_by_key(
    warehouse: Warehouse, stages: StageCatalog, table: str, image: str, keys: Sequence[Any],
) -> dict[Any, bytes | None]:
    """Each key's image bytes (None where the row is gone or its file cannot be read): the BLOB itself, a FILE
    value's file, or a ``'@stage/path'`` value's file, each read through its stage's sandbox."""
    if not keys:
        return {}
    source = source_of(warehouse, stages, table, image)
    query, params = source.rows_by_key_query(list(dict.fromkeys(keys)))
    with warehouse.cursor() as cursor:
        rows = cursor.sql(query, params=params).to_arrow_table()
    values = rows.column("image").combine_chunks()
    if source.is_file:
        data = [read_ref_or_none(stages, ref) for ref in file_refs(values)]
    elif source.paths is not None:
        data = [_staged(stages, source.paths, value) for value in values.to_pylist()]
    else:
        data = values.to_pylist()
    return dict(zip(rows.column("key").to_pylist(), data))


def _staged(stages: StageCatalog, paths: Any, value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        name, path = paths.locate(value)
        return stages.get(name).read_bytes(path)
    except (SightQLError, OSError):  # a gone or forbidden file: nothing to show
        return None
