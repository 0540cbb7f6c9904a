"""The registry's storage: every SQL statement on its tables, behind narrow methods.

Tables: ``sightql_models``, ``sightql_model_versions``, ``sightql_model_aliases``,
``sightql_model_metrics`` and ``sightql_functions``. Every read and write uses its own
short-lived DuckDB cursor, so the store is safe to use from several threads (and from
inside a running SQL function). Values are bound parameters; table names are constants.
"""

from __future__ import annotations

from typing import Any, Mapping

import pyarrow as pa

from sightql.errors import RegistryError
from sightql.registry.records import VERSION_COLUMNS, VersionRecord
from sightql.sql.tables import table_columns
from sightql.sql.warehouse import Warehouse


# created_at is read as UTC without a zone: fetching TIMESTAMPTZ into Python needs pytz.
_SELECT_VERSION = "SELECT " + ", ".join(
    "timezone('UTC', created_at)" if c == "created_at" else c for c in VERSION_COLUMNS
) + " FROM sightql_model_versions"
_LATEST_ORDER = "ORDER BY created_at DESC, version DESC"
_MODEL_TABLES = ("sightql_model_aliases", "sightql_model_metrics", "sightql_model_versions", "sightql_models")


class RegistryStore:
    """The registry tables of one warehouse; each call uses a short-lived cursor of its own."""

    def __init__(self, warehouse: Warehouse):
        self._warehouse = warehouse

    # ---- plumbing -----------------------------------------------------------------
    def _record(self, query: str, params: list[Any]) -> VersionRecord | None:
        rows = self._warehouse.rows(query, params)
        return VersionRecord.from_row(rows[0]) if rows else None

    # ---- models -------------------------------------------------------------------
    def model_names(self) -> list[str]:
        return [r[0] for r in self._warehouse.rows("SELECT name FROM sightql_models ORDER BY name", [])]

    def model_row(self, name: str) -> tuple[str, str] | None:
        """(name, description) of a registered model, or None."""
        rows = self._warehouse.rows("SELECT name, description FROM sightql_models WHERE name = ?", [name])
        return (rows[0][0], rows[0][1]) if rows else None

    def models_table(self) -> pa.Table:
        """One row per model: default and latest version, how many versions, its aliases."""
        with self._warehouse.cursor() as cursor:
            return cursor.sql(
                f"""SELECT m.name, m.description, m.default_version,
                       (SELECT v.version FROM sightql_model_versions v WHERE v.name = m.name
                        {_LATEST_ORDER.replace('created_at', 'v.created_at').replace('version DESC', 'v.version DESC')}
                        LIMIT 1) AS latest_version,
                       (SELECT count(*) FROM sightql_model_versions v WHERE v.name = m.name) AS versions,
                       (SELECT string_agg(a.alias || '=' || a.version, ', ' ORDER BY a.alias)
                        FROM sightql_model_aliases a WHERE a.name = m.name) AS aliases,
                       m.created_at
                FROM sightql_models m ORDER BY m.name"""
            ).to_arrow_table()

    def delete_model(self, name: str) -> None:
        """Its versions, aliases, metrics and the model row, in one transaction."""
        with self._warehouse.transaction() as cur:
            for table in _MODEL_TABLES:
                cur.execute(f"DELETE FROM {table} WHERE name = ?", [name])

    def default_version(self, name: str) -> str | None:
        rows = self._warehouse.rows("SELECT default_version FROM sightql_models WHERE name = ?", [name])
        return rows[0][0] if rows else None

    def set_default(self, name: str, version: str | None) -> None:
        self._warehouse.rows("UPDATE sightql_models SET default_version = ? WHERE name = ?", [version, name])

    # ---- versions -----------------------------------------------------------------
    def version_names(self, name: str) -> list[str]:
        return [r[0] for r in self._warehouse.rows("SELECT version FROM sightql_model_versions WHERE name = ?", [name])]

    def versions(self, name: str) -> list[VersionRecord]:
        """Oldest first."""
        rows = self._warehouse.rows(f"{_SELECT_VERSION} WHERE name = ? ORDER BY created_at, version", [name])
        return [VersionRecord.from_row(r) for r in rows]

    def default_or_latest(self, name: str) -> VersionRecord | None:
        """The default version, else the latest."""
        return self._record(
            f"""{_SELECT_VERSION} WHERE name = ? AND version = coalesce(
                    (SELECT default_version FROM sightql_models WHERE name = ?),
                    (SELECT version FROM sightql_model_versions WHERE name = ? {_LATEST_ORDER} LIMIT 1))""",
            [name, name, name],
        )

    def latest(self, name: str) -> VersionRecord | None:
        return self._record(f"{_SELECT_VERSION} WHERE name = ? {_LATEST_ORDER} LIMIT 1", [name])

    def version_or_alias(self, name: str, selector: str) -> VersionRecord | None:
        """A version named ``selector``, else the one alias ``selector`` points at, read in one statement."""
        return self._record(
            f"""{_SELECT_VERSION} WHERE name = ? AND version = coalesce(
                    (SELECT version FROM sightql_model_versions WHERE name = ? AND version = ?),
                    (SELECT version FROM sightql_model_aliases WHERE name = ? AND alias = ?))""",
            [name, name, selector, name, selector],
        )

    def insert_version(self, record: VersionRecord, metrics: Mapping[str, float], description: str) -> None:
        """The model row (if new), the version and its metrics, in one transaction."""
        values = [getattr(record, c) for c in VERSION_COLUMNS if c != "created_at"]
        columns = ", ".join(c for c in VERSION_COLUMNS if c != "created_at")
        marks = ", ".join("?" for _ in values)
        try:
            with self._warehouse.transaction() as cur:
                cur.execute(
                    "INSERT INTO sightql_models (name, description) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                    [record.name, description],
                )
                cur.execute(f"INSERT INTO sightql_model_versions ({columns}) VALUES ({marks})", values)
                for metric, value in metrics.items():
                    cur.execute(
                        "INSERT INTO sightql_model_metrics (name, version, metric, value) VALUES (?, ?, ?, ?)",
                        [record.name, record.version, metric, value],
                    )
        except Exception as exc:
            if "constraint" in str(exc).lower() or "conflict" in str(exc).lower():
                raise RegistryError(
                    f"{record.ref} was logged meanwhile by another writer; log again for the next number"
                ) from None
            raise

    def delete_version(self, name: str, version: str) -> None:
        """The version and its metrics, in one transaction."""
        with self._warehouse.transaction() as cur:
            cur.execute("DELETE FROM sightql_model_metrics WHERE name = ? AND version = ?", [name, version])
            cur.execute("DELETE FROM sightql_model_versions WHERE name = ? AND version = ?", [name, version])

    # ---- aliases and metrics ------------------------------------------------------
    def alias_names(self, name: str) -> list[str]:
        return [r[0] for r in self._warehouse.rows("SELECT alias FROM sightql_model_aliases WHERE name = ?", [name])]

    def aliases(self, name: str) -> dict[str, str]:
        """alias -> version, by alias."""
        rows = self._warehouse.rows("SELECT alias, version FROM sightql_model_aliases WHERE name = ? ORDER BY alias", [name])
        return dict(rows)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """In one statement, so readers see the old or the new target."""
        self._warehouse.rows(
            """INSERT INTO sightql_model_aliases (name, alias, version, updated_at) VALUES (?, ?, ?, now())
               ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at""",
            [name, alias, version],
        )

    def remove_alias(self, name: str, alias: str) -> None:
        self._warehouse.rows("DELETE FROM sightql_model_aliases WHERE name = ? AND alias = ?", [name, alias])

    def metrics(self, name: str, version: str) -> dict[str, float]:
        rows = self._warehouse.rows(
            "SELECT metric, value FROM sightql_model_metrics WHERE name = ? AND version = ? ORDER BY metric",
            [name, version],
        )
        return dict(rows)

    def set_metric(self, name: str, version: str, metric: str, value: float) -> None:
        self._warehouse.rows(
            """INSERT INTO sightql_model_metrics (name, version, metric, value) VALUES (?, ?, ?, ?)
               ON CONFLICT (name, version, metric) DO UPDATE SET value = excluded.value""",
            [name, version, metric, value],
        )

    # ---- saved SQL functions (create_function) ------------------------------------
    def functions(self) -> list[tuple[str, str, str]]:
        """(name, model reference, task) of each function made with create_function, by name; none when the
        table is missing (a warehouse opened read-only before this version created it)."""
        with self._warehouse.cursor() as cursor:
            if not table_columns(cursor, "sightql_functions"):
                return []
            rows = cursor.execute("SELECT name, model_ref, task FROM sightql_functions ORDER BY name").fetchall()
        return [(name, ref, task) for name, ref, task in rows]

    def save_function(self, sql_name: str, ref: str, task: str) -> None:
        """Replace any function of that name (case-insensitive), in one transaction."""
        with self._warehouse.transaction() as cur:
            cur.execute("DELETE FROM sightql_functions WHERE lower(name) = lower(?)", [sql_name])
            cur.execute("INSERT INTO sightql_functions (name, model_ref, task) VALUES (?, ?, ?)", [sql_name, ref, task])

    def delete_function(self, sql_name: str) -> None:
        self._warehouse.rows("DELETE FROM sightql_functions WHERE lower(name) = lower(?)", [sql_name])

    def is_duckdb_function(self, sql_name: str) -> bool:
        """Whether DuckDB already knows a function of that name (case-insensitive)."""
        rows = self._warehouse.rows("SELECT count(*) FROM duckdb_functions() WHERE lower(function_name) = ?", [sql_name.lower()])
        return bool(rows[0][0])
