"""Image search: an embedding index on a table's image column, kept in step incrementally; nearest images and
near-duplicates, exact for small indexes and approximate (faiss HNSW) for large ones. See docs/search.md.

The Session wires it in (``session.create_index``, ``session.similar_images``, ...); the SQL functions
``similar_images()`` and ``near_duplicates()`` are registered by :func:`register_search_functions`.
"""

from sightql.search.indexes import SearchIndexes
from sightql.search.refresh import RefreshReport
from sightql.search.sql_functions import attach_search, register_search_functions

__all__ = ["attach_search", "RefreshReport", "SearchIndexes", "register_search_functions"]
