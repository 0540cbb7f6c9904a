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
from sightql.inference.outputs import ColumnsArg, OutputColumns, bind_columns, requested_columns
from sightql.inference.path_rows import PathBase
from sightql.inference.row_key import row_key
from sightql.sql.catalog import STAGE_LISTING_SELECT
from sightql.sql.file_type import is_file_type
from sightql.sql.identifiers import quote_ident
from sightql.sql.tables import primary_key, table_columns
from sightql.stages.catalog import StageCatalog
from sightql.stages.paths import split_stage_ref

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
    """Where predictions go: the source table itself, or a table keyed by the source's row key; and which
    outputs go to which of its columns (:mod:`sightql.inference.outputs`)."""

    table: str
    quoted: str
    same_as_source: bool
    key: str
    columns: OutputColumns

    def column(self, output: str) -> str:
        """The quoted column ``output`` ('model_version', 'sha256', 'error', 'top_k', ...) is written to."""
        return self.columns.column(output)


def current_condition(target: Target, alias: str, model_version: str, top_k: int) -> tuple[str, list[Any]]:
    """SQL (with '{}' marks for :meth:`Params.build`) true where row ``alias`` of ``target`` holds a whole prediction
    by ``model_version``: each output column this run writes filled (label and score unless the row is an error
    row; at least ``top_k`` labels), so what its ``sha256`` output says is current. A column newly mapped (or
    emptied by hand) makes its rows due again. NULL (not false) where the row was never predicted."""
    column = target.column
    condition = f"{alias}.{column('model_version')} = {{}}"
    values: list[Any] = [model_version]
    answers = [f"{alias}.{column(o)} IS NOT NULL" for o in ("label", "score") if target.columns.has(o)]
    if answers:
        condition += f" AND ({alias}.{column('error')} IS NOT NULL OR ({' AND '.join(answers)}))"
    if target.columns.has("predicted_at"):
        condition += f" AND {alias}.{column('predicted_at')} IS NOT NULL"
    if top_k > 0:
        condition += (f" AND ({alias}.{target.column('error')} IS NOT NULL "
                      f"OR coalesce(len({alias}.{target.column('top_k')}), 0) >= {{}})")
        values.append(top_k)
    return condition, values


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
    paths: PathBase | None = None  # the image column holds stage paths (VARCHAR): where they point

    @property
    def in_stages(self) -> bool:
        """Whether the rows' bytes are in stages (FILE values or paths), read by whoever predicts a run."""
        return self.is_file or self.paths is not None

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
        condition, values = current_condition(target, o, model_version, top_k)
        current = [(f"{condition} AND {o}.{target.column('sha256')} IS NOT DISTINCT FROM s.sha256", values)]
        if target.same_as_source:  # NULL (never predicted) is not current
            return [("WHERE NOT coalesce(", []), *current, (", false)", [])]
        key = quote_ident(self.key)
        return [(f"WHERE NOT EXISTS (SELECT 1 FROM {target.quoted} o WHERE o.{key} = s.{key} AND", []), *current, (")", [])]

    def _known_sha256(self, target: Target, model_version: str, recompute: bool, top_k: int) -> tuple[str, list[Any]]:
        """The sha256 a row's current prediction (same model version, enough labels) was made from
        ('' for a NULL image), or NULL when the row has no current prediction."""
        if recompute:
            return (", NULL::VARCHAR AS known_sha256", [])
        o = "s" if target.same_as_source else "o"
        condition, values = current_condition(target, o, model_version, top_k)
        sha = target.column("sha256")
        if target.same_as_source:
            return (f", CASE WHEN {condition} THEN coalesce(s.{sha}, '') END AS known_sha256", values)
        key = quote_ident(self.key)
        return (f", (SELECT coalesce(o.{sha}, '') FROM {target.quoted} o WHERE o.{key} = s.{key} AND {condition}) "
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


def resolve_table(
    cursor: Any, table: str, image: str, paths: PathBase | None = None, key: str | None = None,
) -> TableSource:
    """The table source: its image column (BLOB, FILE values, or stage paths, VARCHAR) and its row key
    (:func:`~sightql.inference.row_key.row_key`). ``paths``: where a path column's values point
    (``stage=``; None when it was not given)."""
    quoted = quote_ident(table, "table name")
    columns = table_columns(cursor, table)
    if not columns:
        raise TableError(f"no table named {table!r}; load images first with session.load_images({table!r}, 'folder/')")
    image = next((name for name in columns if name.lower() == image.lower()), image)
    if image not in columns:
        raise TableError(
            f"table {table!r} has no column {image!r}; pass image= one of its columns: {', '.join(columns)}"
        )
    is_file = is_file_type(columns[image])
    kind = columns[image]
    if kind not in ("BLOB", "VARCHAR") and not is_file:
        raise TableError(
            f"column {image!r} of {table!r} is {kind}, not BLOB or file (image bytes or FILE values) or VARCHAR (stage "
            "paths); pass image= the column holding the images"
        )
    if kind != "VARCHAR":
        if paths is not None and paths.stage is not None:
            raise TableError(
                f"stage= is for a column of paths (VARCHAR), and column {image!r} of {table!r} is {kind}; "
                "leave stage= out for a column of image bytes or FILE values"
            )
        paths = None
    else:
        paths = paths or PathBase()
        if paths.stage is None and not _holds_stage_refs(cursor, quoted, image):
            raise TableError(
                f"column {image!r} of {table!r} is VARCHAR, not BLOB or file, and holds no '@stage/path' references; "
                "if it holds paths relative to a stage, pass stage='@stage' (--stage)"
            )
    key_column = row_key(cursor, table, columns, image, key, paths is not None)
    shadowed = any(name.lower() == "rowid" for name in columns)
    # A FILE or path row's identity is its file's (size, etag), never a sha256 column: see inference/file_rows.py.
    has_sha256 = columns.get("sha256") == "VARCHAR" and kind == "BLOB"
    return TableSource(table, quoted, key_column, columns[key_column], image, has_sha256, not shadowed, is_file, paths)


def _holds_stage_refs(cursor: Any, quoted: str, image: str) -> bool:
    """Whether a VARCHAR column holds any '@stage/path' value (a column of full references)."""
    column = quote_ident(image)
    return cursor.execute(f"SELECT count(*) FROM (SELECT 1 FROM {quoted} WHERE starts_with({column}, '@') LIMIT 1)"
                          ).fetchone()[0] > 0


def resolve_stage(stages: StageCatalog, ref: str) -> StageSource:
    name, prefix = split_stage_ref(ref)
    stage = stages.get(name)  # raises naming the known stages
    return StageSource(name, stage.url, prefix, stage.endpoint_url)


def prepare_target(
    cursor: Any, source: TableSource | StageSource, into: str | None, top_k: int, columns: ColumnsArg = None,
) -> Target:
    """Create the output table or add the output columns (``columns=``: under the user's names, see
    :mod:`sightql.inference.outputs`); returns where to write. Every check runs before anything is changed."""
    if into is None:
        if isinstance(source, StageSource):
            raise ConfigError(f"a stage source needs into= a table name for the predictions, e.g. into='{source.name}_labels'")
        into = source.table
    quoted = quote_ident(into, "into table name")
    same = isinstance(source, TableSource) and quoted.lower() == source.quoted.lower()
    existing = table_columns(cursor, into)
    if not same and existing and [k.lower() for k in primary_key(cursor, into)] != [source.key.lower()]:
        raise TableError(f"table {into!r} exists but is not keyed by {source.key!r}; pick a new into= table name")
    protected = {source.key.lower(): "the row key"}
    if same and isinstance(source, TableSource):
        image = source.image.lower()
        protected[image] = "the row key and the image column" if image in protected else "the image column"
    requested = requested_columns(columns, top_k, existing_top_k="top_k" in {c.lower() for c in existing})
    bound, missing = bind_columns(into, existing, requested, protected)
    if not same:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {quoted} ({quote_ident(source.key)} {source.key_type} PRIMARY KEY)")
    for column, sql_type in missing:
        cursor.execute(f"ALTER TABLE {quoted} ADD COLUMN IF NOT EXISTS {quote_ident(column)} {sql_type}")
    return Target(into, quoted, same, source.key, bound)
