"""Catalog tables SightQL keeps in every warehouse, and the ``directory()`` macro over them."""

from __future__ import annotations

from typing import Any

CATALOG_DDL = [
    """CREATE TABLE IF NOT EXISTS sightql_stages (
        name VARCHAR PRIMARY KEY,
        url VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS sightql_stage_files (
        stage VARCHAR NOT NULL,
        relative_path VARCHAR NOT NULL,
        file_url VARCHAR NOT NULL,
        size BIGINT,
        last_modified TIMESTAMPTZ,
        etag VARCHAR,
        PRIMARY KEY (stage, relative_path)
    )""",
]

# directory('@stage') or directory('@stage/prefix'): the stage's files as a table.
DIRECTORY_MACRO = """
CREATE OR REPLACE TEMP MACRO directory(stage_ref) AS TABLE
    SELECT relative_path, file_url, size, last_modified, etag
    FROM sightql_stage_files
    WHERE stage = split_part(ltrim(stage_ref, '@'), '/', 1)
      AND starts_with(relative_path, CASE WHEN contains(stage_ref, '/')
                                          THEN substr(stage_ref, strpos(stage_ref, '/') + 1)
                                          ELSE '' END)
    ORDER BY relative_path
"""


def ensure_catalog(con: Any, read_only: bool) -> None:
    if not read_only:
        for ddl in CATALOG_DDL:
            con.execute(ddl)
    con.execute(DIRECTORY_MACRO)
