"""What to predict: a table (by its primary key) or a stage prefix (by relative path), and which rows are due.

A row is due unless its current prediction was made by the same model version from the
same image bytes (same sha256; for a ``file`` column, the same FILE value, see
:mod:`sightql.inference.file_rows`), and, when ``top_k`` is asked for, already has that many
labels. ``recompute=True`` makes every row due.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from sightql.errors import ConfigError, TableError
from sightql.sql.catalog import STAGE_LISTING_SELECT
from sightql.sql.file_type import is_file_type
from sightql.sql.identifiers import quote_ident
from sightql.sql.tables import primary_key, table_columns
from sightql.stages.catalog import StageCatalog
from sightql.stages.paths import split_stage_ref

# Output columns, in the order they are created. Names are fixed (see docs/batch.md).
OUTPUT_COLUMNS: dict[str, str] = {
    "predicted_label": "VARCHAR",
    "confidence": "DOUBLE",
    "top_k": "STRUCT(label VARCHAR, score DOUBLE)[]",
    "model_version": "VARCHAR",
    "predicted_at": "TIMESTAMP WITH TIME ZONE",
    "prediction_error": "VARCHAR",
    "predicted_sha256": "VARCHAR",
}

UserParams = Sequence[Any] | dict[str, Any] | None


class Params:
    """Bound values for a query mixing the caller's ``where`` parameters with ours.

    DuckDB does not mix '?' and '$name' in one statement, so ours follow the caller's style.
    """

    def __init__(self, user: UserParams):
        if user is not None and not isinstance(user, (dict, list, tuple)):
            raise ConfigError("params must be a list (for '?') or a dict (for '$name') of values for the where filter")
        self.named = isinstance(user, dict)
        self._user = user

    def build(self, parts: list[tuple[str, list[Any]]]) -> tuple[str, Any]:
        """Join SQL pieces; each piece's '{}' marks take its values in order. '@where' marks the caller's values."""
        sql: list[str] = []
        values: Any = dict(self._user or {}) if self.named else []
        counter = 0
        for text, own in parts:
            if text == "@where":
                if not self.named:
                    values.extend(self._user or [])
                continue
            marks = []
            for value in own:
                if self.named:
                    name = f"_sightql_p{counter}"
                    counter += 1
                    values[name] = value
                    marks.append(f"${name}")
                else:
                    values.append(value)
                    marks.append("?")
            sql.append(text.format(*marks))
        return " ".join(sql), values


@dataclass(frozen=True)
class Target:
    """Where predictions go: the source table itself, or a table keyed by the source's row key."""

    table: str
    quoted: str
    same_as_source: bool
    key: str
    has_top_k: bool


@dataclass(frozen=True)
class TableSource:
    table: str
    quoted: str
    key: str
    key_type: str
    image: str
    has_sha256_column: bool
    has_rowid: bool = True  # False when a column named rowid hides DuckDB's row id: read by key then
    is_file: bool = False  # the image column holds FILE values (its bytes are in stages), not BLOBs

    @property
    def label(self) -> str:
        return self.table

    def _from(self, where: str | None) -> list[tuple[str, list[Any]]]:
        rowid = "rowid" if self.has_rowid else "NULL::BIGINT"
        inner = f"SELECT {rowid} AS _sightql_rowid, * FROM {self.quoted}" + (f" WHERE ({where})" if where else "")
        return [(f"FROM ({inner}", []), ("@where", []), (") s", [])] if where else [(f"FROM ({inner}) s", [])]

    def _due(self, target: Target, model_version: str, recompute: bool, top_k: int) -> list[tuple[str, list[Any]]]:
        """Rows without a current prediction. Into another table this is an anti-join whose hash table
        holds only the predictions (never a LEFT JOIN, which DuckDB may build on the image side)."""
        if recompute or not self.has_sha256_column:
            return [("WHERE true", [])]  # without a sha256 column, bytes are hashed as ranges are read
        o = "s" if target.same_as_source else "o"
        content = "s.sha256" if self.has_sha256_column else f"sha256(s.{quote_ident(self.image)})"
        current = [(f"{o}.model_version IS NOT DISTINCT FROM {{}} AND {o}.predicted_sha256 IS NOT DISTINCT FROM {content}",
                    [model_version])]
        if top_k > 0:
            current.append((f"AND ({o}.prediction_error IS NOT NULL OR coalesce(len({o}.top_k), 0) >= {{}})", [top_k]))
        if target.same_as_source:
            return [("WHERE NOT (", []), *current, (")", [])]
        key = quote_ident(self.key)
        return [(f"WHERE NOT EXISTS (SELECT 1 FROM {target.quoted} o WHERE o.{key} = s.{key} AND", []), *current, (")", [])]

    def _known_sha256(self, target: Target, model_version: str, recompute: bool, top_k: int) -> tuple[str, list[Any]]:
        """The sha256 a row's current prediction (same model version, enough labels) was made from
        ('' for a NULL image), or NULL when the row has no current prediction."""
        if recompute:
            return (", NULL::VARCHAR AS known_sha256", [])
        o = "s" if target.same_as_source else "o"
        condition = f"{o}.model_version = {{}}"
        values: list[Any] = [model_version]
        if top_k > 0:
            condition += f" AND ({o}.prediction_error IS NOT NULL OR coalesce(len({o}.top_k), 0) >= {{}})"
            values.append(top_k)
        if target.same_as_source:
            return (f", CASE WHEN {condition} THEN coalesce(s.predicted_sha256, '') END AS known_sha256", values)
        key = quote_ident(self.key)
        return (f", (SELECT coalesce(o.predicted_sha256, '') FROM {target.quoted} o WHERE o.{key} = s.{key} AND {condition}) "
                "AS known_sha256", values)

    def count_query(self, params: Params, target: Target, where: str | None) -> tuple[str, Any]:
        return params.build([("SELECT count(*)", []), *self._from(where)])

    def due_query(
        self, params: Params, target: Target, where: str | None, model_version: str, recompute: bool, top_k: int,
        *, count: bool = False, after: Any = None, limit: int | None = None,
    ) -> tuple[str, Any]:
        """The due rows' row ids and keys in storage order (and, without a sha256 column, the hash their
        current prediction was made from); or, with ``count``, how many there are. No image is read.

        ``after`` (the last row id read, or the last key where the table hides its row ids) and
        ``limit`` read one page of that order, so a job reads its plan in short queries."""
        if count:
            select: list[tuple[str, list[Any]]] = [("SELECT count(*)", [])]
        else:
            select = [(f"SELECT s._sightql_rowid AS rowid, s.{quote_ident(self.key)} AS key", [])]
            if not self.has_sha256_column:
                select.append(self._known_sha256(target, model_version, recompute, top_k))
        parts = [*select, *self._from(where), *self._due(target, model_version, recompute, top_k)]
        if after is not None:
            position = "s._sightql_rowid" if self.has_rowid else f"s.{quote_ident(self.key)}"
            parts.append((f"AND {position} > {{}}", [after]))
        if not count:
            parts.append(("ORDER BY 1, 2", []))
        if limit is not None:
            parts.append((f"LIMIT {int(limit)}", []))
        return params.build(parts)

    def position_of(self, rowid: Any, key: Any) -> Any:
        """What :meth:`due_query`'s ``after`` takes for a row read: its row id, or its key without row ids."""
        return rowid if self.has_rowid else key

    def rows_by_key_query(self, keys: Sequence[Any]) -> tuple[str, list[Any]]:
        """Key and image of the rows with these keys (a few hundred at most, answered through the
        primary-key index; slower than reading by row id, so only the fallback for moved rows)."""
        marks = ", ".join("?" for _ in keys)
        key = quote_ident(self.key)
        return (
            f"SELECT {key} AS key, {quote_ident(self.image)} AS image FROM {self.quoted} WHERE {key} IN ({marks})",
            list(keys),
        )


@dataclass(frozen=True)
class StageSource:
    name: str
    url: str
    prefix: str
    endpoint_url: str | None = None  # an s3:// stage's endpoint (Stage.endpoint_url)
    key: str = "relative_path"
    key_type: str = "VARCHAR"

    @property
    def label(self) -> str:
        return f"@{self.name}/{self.prefix}" if self.prefix else f"@{self.name}"

    def paths_query(self, params: Params, where: str | None) -> tuple[str, Any]:
        # The columns of directory('@stage/prefix'), listed live. directory() is a TEMP macro that
        # this query's cursor does not see, so it uses the listing function under the macro.
        listing = f"SELECT relative_path FROM ({STAGE_LISTING_SELECT.format(ref='{}')})"
        parts: list[tuple[str, list[Any]]] = [(listing, [self.label])]
        if where:
            parts += [(f"WHERE ({where})", []), ("@where", [])]
        parts.append(("ORDER BY relative_path", []))
        return params.build(parts)


def resolve_table(cursor: Any, table: str, image: str) -> TableSource:
    quoted = quote_ident(table, "table name")
    columns = table_columns(cursor, table)
    if not columns:
        raise TableError(f"no table named {table!r}; load images first with session.load_images({table!r}, 'folder/')")
    if image not in columns:
        raise TableError(
            f"table {table!r} has no column {image!r}; pass image= one of its columns: {', '.join(columns)}"
        )
    is_file = is_file_type(columns[image])
    if columns[image] != "BLOB" and not is_file:
        raise TableError(
            f"column {image!r} of {table!r} is {columns[image]}, not BLOB or file; "
            "pass image= the column holding image bytes or FILE values"
        )
    key = primary_key(cursor, table)
    if len(key) != 1:
        raise TableError(
            f"table {table!r} has no single-column primary key, so predictions cannot be written back by row; "
            "give it one (image tables made by load_images use relative_path)"
        )
    shadowed = any(name.lower() == "rowid" for name in columns)
    # A FILE row's identity is its value (size, etag), never a sha256 column: see inference/file_rows.py.
    has_sha256 = columns.get("sha256") == "VARCHAR" and not is_file
    return TableSource(table, quoted, key[0], columns[key[0]], image, has_sha256, not shadowed, is_file)


def resolve_stage(stages: StageCatalog, ref: str) -> StageSource:
    name, prefix = split_stage_ref(ref)
    stage = stages.get(name)  # raises naming the known stages
    return StageSource(name, stage.url, prefix, stage.endpoint_url)


def prepare_target(cursor: Any, source: TableSource | StageSource, into: str | None, top_k: int) -> Target:
    """Create the output table or add the output columns; returns where to write."""
    if into is None:
        if isinstance(source, StageSource):
            raise ConfigError(f"a stage source needs into= a table name for the predictions, e.g. into='{source.name}_labels'")
        into = source.table
    quoted = quote_ident(into, "into table name")
    wanted = {c: t for c, t in OUTPUT_COLUMNS.items() if c != "top_k" or top_k > 0}
    same = isinstance(source, TableSource) and quoted == source.quoted
    if same:
        columns = table_columns(cursor, into)
        clash = [c for c in wanted if c in columns and c != "top_k" and columns[c] != wanted[c]]
    else:
        key_sql = quote_ident(source.key)
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {quoted} ({key_sql} {source.key_type} PRIMARY KEY)")
        if primary_key(cursor, into) != [source.key]:
            raise TableError(
                f"table {into!r} exists but is not keyed by {source.key!r}; pick a new into= table name"
            )
        columns = table_columns(cursor, into)
        clash = [c for c in wanted if c in columns and columns[c] != wanted[c] and c != "top_k"]
    if clash:
        raise TableError(
            f"table {into!r} already has column(s) {', '.join(clash)} of another type; predict into a new table with into="
        )
    for column, sql_type in wanted.items():
        cursor.execute(f"ALTER TABLE {quoted} ADD COLUMN IF NOT EXISTS {quote_ident(column)} {sql_type}")
    has_top_k = "top_k" in table_columns(cursor, into)
    return Target(into, quoted, same, source.key, has_top_k)
