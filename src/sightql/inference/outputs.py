"""What a predict run writes: its outputs, the column each goes to (``columns=``), and their types.

Outputs, by name (see docs/batch.md, "Write-back into your own columns"):

============== ====================== ==================================================
output         default column         a column of yours may be
============== ====================== ==================================================
label          predicted_label        VARCHAR
score          confidence             DOUBLE, FLOAT or DECIMAL (cast on write)
top_k          top_k                  STRUCT(label VARCHAR, score DOUBLE)[]
model_version  model_version          VARCHAR
predicted_at   predicted_at           TIMESTAMP WITH TIME ZONE, or TIMESTAMP (UTC), _S/_MS/_NS
error          prediction_error       VARCHAR
sha256         predicted_sha256       VARCHAR
============== ====================== ==================================================

Without ``columns=`` every output goes to its default column (as before). With it, the outputs it
maps go to the user's columns, and the three that incremental runs depend on (``model_version``,
``error``, ``sha256``: the bookkeeping) go to their default columns unless mapped too, so they are
always written in the same statement as the user's columns and a crash cannot separate them.
An output may also be named by its default column (``confidence=CONF``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from sightql.errors import ConfigError, TableError
from sightql.sql.identifiers import quote_ident

TOP_K_SQL = "STRUCT(label VARCHAR, score DOUBLE)[]"
_TIMESTAMPS = ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS")
_DECIMAL = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")


def _plain(sql_type: str) -> str:
    return re.sub(r'[\s"]', "", sql_type).upper()


def _is_number(sql_type: str) -> bool:
    """DOUBLE, FLOAT, or a DECIMAL with room for 1.0 (a score is in [0, 1])."""
    decimal = _DECIMAL.match(sql_type)
    return sql_type in ("DOUBLE", "FLOAT") or (decimal is not None and int(decimal[1]) - int(decimal[2]) >= 1)


@dataclass(frozen=True)
class Output:
    name: str  # what columns= calls it
    default: str  # the column it goes to unless mapped
    sql_type: str  # the type a new column gets
    accepts: Callable[[str], bool]  # whether an existing column of this type can hold it
    wanted: str  # the accepted types, in words
    field: str | None  # the result table's field carrying it; None: the writer's own value

    def value_sql(self, row: str, column_type: str) -> str:
        """The SQL value written for this output from result row alias ``row`` ('?' is the model version)."""
        if self.name == "model_version":
            return "?"
        if self.name == "predicted_at":  # a column without a zone holds UTC wall-clock time
            return "now()" if column_type == "TIMESTAMP WITH TIME ZONE" else "timezone('UTC', now())"
        return f"{row}.{self.field}"


OUTPUTS: dict[str, Output] = {
    o.name: o
    for o in (
        Output("label", "predicted_label", "VARCHAR", lambda t: t == "VARCHAR", "VARCHAR", "predicted_label"),
        Output("score", "confidence", "DOUBLE", _is_number, "DOUBLE, FLOAT or DECIMAL(p, s) with p - s >= 1",
               "confidence"),
        Output("top_k", "top_k", TOP_K_SQL, lambda t: _plain(t) == _plain(TOP_K_SQL), TOP_K_SQL, "top_k"),
        Output("model_version", "model_version", "VARCHAR", lambda t: t == "VARCHAR", "VARCHAR", None),
        Output("predicted_at", "predicted_at", "TIMESTAMP WITH TIME ZONE", lambda t: t in _TIMESTAMPS,
               "TIMESTAMP or TIMESTAMP WITH TIME ZONE", None),
        Output("error", "prediction_error", "VARCHAR", lambda t: t == "VARCHAR", "VARCHAR", "prediction_error"),
        Output("sha256", "predicted_sha256", "VARCHAR", lambda t: t == "VARCHAR", "VARCHAR", "predicted_sha256"),
    )
}
BOOKKEEPING = ("model_version", "error", "sha256")  # what the next run needs to tell whether a row is current
_ALIASES = {o.default: o.name for o in OUTPUTS.values()}

ColumnsArg = Mapping[str, str] | str | None


@dataclass(frozen=True)
class OutputColumns:
    """The outputs a run writes: (output name, column as the table spells it, its type), in output order."""

    entries: tuple[tuple[str, str, str], ...]

    def __iter__(self) -> Iterator[tuple[Output, str, str]]:
        return ((OUTPUTS[name], column, sql_type) for name, column, sql_type in self.entries)

    def has(self, output: str) -> bool:
        return any(name == output for name, _, _ in self.entries)

    def column(self, output: str) -> str:
        """The quoted column ``output`` goes to (it must be one this run writes)."""
        return quote_ident(next(column for name, column, _ in self.entries if name == output))


def parse_columns(text: str) -> dict[str, str]:
    """``'label=TYPE,score=CONFIDENCE'`` (the CLI's --columns) as ``{'label': 'TYPE', 'score': 'CONFIDENCE'}``."""
    pairs: dict[str, str] = {}
    for part in text.split(","):
        output, equals, column = (p.strip() for p in part.partition("="))
        if not equals or not output or not column:
            raise ConfigError(
                f"columns takes OUTPUT=COLUMN pairs separated by commas, e.g. label=TYPE,score=CONFIDENCE; "
                f"{part.strip()!r} is not one"
            )
        if output in pairs:
            raise ConfigError(f"columns maps {output!r} twice; map each output once")
        pairs[output] = column
    return pairs


def requested_columns(columns: ColumnsArg, top_k: int, existing_top_k: bool) -> dict[str, str]:
    """Output name -> the column it is to be written to, for ``columns=`` (None: every default column;
    ``top_k`` only when asked for, or already there from an earlier run, which then gets this run's)."""
    if columns is None:
        return {o.name: o.default for o in OUTPUTS.values() if o.name != "top_k" or top_k > 0 or existing_top_k}
    if isinstance(columns, str):
        columns = parse_columns(columns)
    if not isinstance(columns, Mapping) or not columns:
        raise ConfigError("columns maps outputs to your columns, e.g. {'label': 'TYPE', 'score': 'CONFIDENCE'} "
                          f"(--columns label=TYPE,score=CONFIDENCE); got {columns!r}")
    mapped: dict[str, str] = {}
    for output, column in columns.items():
        name = _ALIASES.get(output, output) if isinstance(output, str) else output
        if name not in OUTPUTS:
            raise ConfigError(f"no output is called {output!r}; the outputs are {', '.join(OUTPUTS)}")
        if name in mapped:
            raise ConfigError(f"columns maps {name!r} twice (as {name!r} and as its column {OUTPUTS[name].default!r})")
        quote_ident(column, f"the column for {name}")  # a plain name: letters, digits, '_'
        mapped[name] = column
    if "top_k" in mapped and top_k <= 0:
        raise ConfigError("columns maps top_k, but top_k is 0; pass top_k= (--top-k) the number of labels to keep, e.g. 3")
    wanted = [o.name for o in OUTPUTS.values() if o.name in mapped or o.name in BOOKKEEPING or (o.name == "top_k" and top_k > 0)]
    return {name: mapped.get(name, OUTPUTS[name].default) for name in wanted}


def bind_columns(
    table: str, existing: Mapping[str, str], requested: Mapping[str, str], protected: Mapping[str, str],
) -> tuple[OutputColumns, list[tuple[str, str]]]:
    """Match ``requested`` (output -> column) with the table's columns (``existing``: name -> type, matched
    case-insensitively as DuckDB does): the columns to write, and the (name, type) of those to add.
    A column of a type that cannot hold its output, one written twice, or one of ``protected`` (lower-cased
    name -> what it is: the key, the images) is refused in one sentence; nothing is changed before that."""
    by_lower = {name.lower(): (name, sql_type) for name, sql_type in existing.items()}
    taken: dict[str, str] = {}
    entries: list[tuple[str, str, str]] = []
    missing: list[tuple[str, str]] = []
    for name, column in requested.items():
        output = OUTPUTS[name]
        lower = column.lower()
        if lower in protected:
            raise TableError(f"{name} cannot be written to {column!r}: it is {protected[lower]} of {table!r}; "
                             "map it to another column")
        if lower in taken:
            raise TableError(f"{taken[lower]} and {name} would both be written to column {column!r}; "
                             f"map one of them to another column, e.g. {name}={column}_{name}")
        taken[lower] = name
        found = by_lower.get(lower)
        if found is None:
            entries.append((name, column, output.sql_type))
            missing.append((column, output.sql_type))
            continue
        if not output.accepts(found[1]):
            raise TableError(f"column {found[0]!r} of {table!r} is {found[1]}, which cannot hold {name} "
                             f"({output.wanted}); map {name} to another column or change that column's type")
        entries.append((name, found[0], found[1]))
    return OutputColumns(tuple(entries)), missing
