"""Named SQL functions bound to a model reference: ``session.create_function('defects', 'defects@prod')``.

They are stored in ``sightql_functions`` and registered again on every connect,
so they survive reopening the warehouse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sightql.errors import RegistryError
from sightql.sql.identifiers import quote_ident

if TYPE_CHECKING:
    from sightql.session import Session
    from sightql.sql.functions import ImageFunctions

SIGHTQL_FUNCTIONS = ("classify", "classify_topk", "embed", "embed_text", "image_info", "stage_file", "directory")


def _saved(con: Any) -> dict[str, tuple[str, str]]:
    cursor = con.cursor()
    try:
        exists = cursor.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'sightql_functions'"
        ).fetchone()[0]
        if not exists:
            return {}
        rows = cursor.execute("SELECT name, model_ref, task FROM sightql_functions ORDER BY name").fetchall()
    finally:
        cursor.close()
    return {name: (ref, task) for name, ref, task in rows}


def list_model_functions(con: Any) -> list[dict[str, str]]:
    return [{"name": name, "model_ref": ref, "task": task} for name, (ref, task) in _saved(con).items()]


def register_saved_functions(con: Any, funcs: "ImageFunctions") -> None:
    from sightql.sql.functions import register_model_function

    for name, (ref, task) in _saved(con).items():
        register_model_function(con, funcs, name, ref, task)


def _check_name(session: "Session", sql_name: str, replace: bool) -> str:
    quote_ident(sql_name, "function name")
    if "." in sql_name:
        raise RegistryError(f"function name {sql_name!r} may not contain a schema; use a plain name")
    lowered = sql_name.lower()
    saved = {name.lower() for name in _saved(session.con)}
    if lowered in SIGHTQL_FUNCTIONS:
        raise RegistryError(f"{sql_name!r} is a SightQL function; pick another name for yours")
    if lowered in saved:
        if not replace:
            raise RegistryError(f"a function {sql_name!r} already exists; pass replace=True or drop it first")
        return sql_name
    if session.registry.store.is_duckdb_function(lowered):
        raise RegistryError(f"{sql_name!r} is already a DuckDB function; pick a name that does not shadow it")
    return sql_name


def create_model_function(
    session: "Session", funcs: "ImageFunctions", sql_name: str, ref: str, *, replace: bool = False
) -> None:
    from sightql.models.loader import is_builtin
    from sightql.sql.functions import TEXT_EMBEDDING, register_model_function

    _check_name(session, sql_name, replace)
    if is_builtin(ref):
        card = session.predictor(ref).card
    else:
        card = session.registry.resolve(ref).card  # the reference must name a model now
    task = TEXT_EMBEDDING if card.modality == "text" else card.task
    session.registry.store.save_function(sql_name, ref, task)
    if replace:
        try:
            session.con.remove_function(sql_name)
        except Exception:
            pass
    register_model_function(session.con, funcs, sql_name, ref, task)


def drop_model_function(session: "Session", sql_name: str) -> None:
    saved = {name.lower(): name for name in _saved(session.con)}
    if sql_name.lower() not in saved:
        raise RegistryError(f"no function {sql_name!r} made with create_function; saved: {', '.join(saved.values()) or 'none'}")
    session.registry.store.delete_function(sql_name)
    session.con.remove_function(saved[sql_name.lower()])
