"""The embedding indexes of one warehouse: create, refresh, list and drop them; search them.

The Session's methods (``create_index``, ``refresh_index``, ``indexes``, ``drop_index``,
``similar_images``, ``near_duplicates``) and the SQL functions ``similar_images()`` and
``near_duplicates()`` are thin calls into :class:`SearchIndexes`. See docs/search.md.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pyarrow as pa

from sightql.errors import ConfigError, TableError
from sightql.registry import Registry
from sightql.search import approximate
from sightql.search.catalog import (
    BOOKKEEPING, VECTOR, IndexRecord, drop_record, find_record, get_record, index_table_name, list_records, save_record,
)
from sightql.search.embedder import IndexModel, index_model, query_vector
from sightql.search.images import images_by_key
from sightql.search.nearest import check_k, near_duplicates, similar, use_approximate
from sightql.search.refresh import RefreshReport, WriteHook, refresh, source_of
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog

_TAKEN = {VECTOR, "embedded_at", *(column for _, column, _ in BOOKKEEPING)}


class SearchIndexes:
    """Bound to one warehouse, its registry (the models) and its stages (where FILE values and queries point)."""

    def __init__(self, warehouse: Warehouse, registry: Registry, stages: StageCatalog):
        self.warehouse = warehouse
        self.registry = registry
        self.stages = stages

    # ---- the indexes ------------------------------------------------------------------
    def record(self, table: str) -> IndexRecord:
        with self.warehouse.cursor() as cursor:
            return get_record(cursor, table)

    def images(self, table: str, keys: list[Any]) -> dict[Any, bytes | None]:
        """The image bytes of these rows of an indexed table (None where unreadable), e.g. to show results."""
        record = self.record(table)
        return images_by_key(self.warehouse, self.stages, record.table, record.image, keys)

    def list(self) -> list[dict[str, Any]]:
        with self.warehouse.cursor() as cursor:
            return [record.as_dict() for record in list_records(cursor)]

    def create(self, table: str, image: str = "image", model: str = "imagenet", *, chunk_rows: int | None = None,
               on_write: WriteHook | None = None) -> RefreshReport:
        """Index ``table``'s ``image`` column with ``model`` and embed every row. An index of the same column and
        model is refreshed (nothing is embedded twice); another column or model replaces the index."""
        source = source_of(self.warehouse, self.stages, table, image)
        if source.key.lower() in _TAKEN:
            raise TableError(f"the row key of {table!r} is named {source.key!r}, which the index uses itself; "
                             "rename that column")
        chosen = index_model(self.warehouse, self.registry, model)
        record = IndexRecord(source.table, source.image, source.key, model, chosen.model_version,
                             chosen.dimension(), index_table_name(source.table))
        with self.warehouse.transaction() as cursor:
            old = find_record(cursor, table)
            if old is not None and (old.image, old.model_ref, old.dimension, old.key) != (
                    record.image, record.model_ref, record.dimension, record.key):
                drop_record(cursor, old)
            save_record(cursor, record)
        if old is not None and old.index_table != record.index_table:
            approximate.remove_files(self.warehouse.home, old)
        return self._refresh(record, chosen, chunk_rows, on_write)

    def refresh(self, table: str, *, chunk_rows: int | None = None, on_write: WriteHook | None = None) -> RefreshReport:
        """Embed the rows added or changed since the last refresh and drop the deleted ones."""
        record = self.record(table)
        return self._refresh(record, index_model(self.warehouse, self.registry, record.model_ref), chunk_rows, on_write)

    def _refresh(self, record: IndexRecord, chosen: IndexModel, chunk_rows: int | None,
                 on_write: WriteHook | None) -> RefreshReport:
        if chosen.model_version != record.model_version:  # an alias moved: every row is embedded again
            record = replace(record, model_version=chosen.model_version)
        report = refresh(self.warehouse, self.stages, record, chosen, chunk_rows=chunk_rows, on_write=on_write)
        if self._approximate(record, None):  # build the approximate index now rather than at the first search
            with self.warehouse.cursor() as cursor:
                approximate.approximate_index(self.warehouse.home, cursor, self.record(record.table))
        return report

    def drop(self, table: str) -> None:
        with self.warehouse.transaction() as cursor:
            record = get_record(cursor, table)
            drop_record(cursor, record)
        approximate.remove_files(self.warehouse.home, record)

    # ---- search ------------------------------------------------------------------------
    def _approximate(self, record: IndexRecord, asked: bool | None) -> bool:
        with self.warehouse.cursor() as cursor:
            return use_approximate(self.warehouse, cursor, record, asked)

    def similar_images(self, table: str, query: Any, k: int = 10, *, approximate: bool | None = None,
                       exclude: Any = None) -> pa.Table:
        check_k(k)
        record = self.record(table)
        chosen = index_model(self.warehouse, self.registry, record.model_ref)
        if record.model_version != chosen.model_version:
            raise ConfigError(f"the index of {record.table!r} was built by {record.model_version} and {record.model_ref!r} "
                              f"is another version now; refresh it with session.refresh_index({record.table!r})")
        vector = query_vector(self.warehouse, self.stages, chosen, record.table, query)
        return similar(self.warehouse, record, vector, k, approximate, exclude)

    def near_duplicates(self, table: str, threshold: float = 0.1, *, approximate: bool | None = None) -> pa.Table:
        return near_duplicates(self.warehouse, self.record(table), threshold, approximate)
