"""The DuckDB engine: catalog tables, SQL functions and the directory() table macro."""
