"""The warehouse context every layer below the Session takes (``warehouse.py``): opening the DuckDB
file and taking turns on it, the catalog tables, cursors and transactions, table introspection and the
rowid reader (``tables.py``), scripts, identifiers, DuckDB errors as sentences, and the write budget."""
