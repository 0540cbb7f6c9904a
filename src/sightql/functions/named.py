"""Named SQL functions bound to a model reference: ``session.create_function('defects', 'defects@prod')``.

They are stored in ``sightql_functions`` (the registry store reads and writes that table) and
registered again on every connect, so they survive reopening the warehouse. A function over an
image model takes a BLOB or a FILE, as ``classify`` does (:mod:`sightql.functions.image_args`).
"""

from __future__ import annotations

from typing import Any

from duckdb import sqltypes as T

from sightql.errors import RegistryError
from sightql.functions.image_args import COMMON, register_image_function, remove_image_function
from sightql.functions.image_functions import TEXT_EMBEDDING, ImageFunctions, sql_types
from sightql.models.loader import is_builtin
from sightql.registry import Registry
from sightql.sql.identifiers import quote_ident
from sightql.sql.warehouse import Warehouse


SIGHTQL_FUNCTIONS = (
    "classify", "classify_topk", "embed", "embed_text", "image_info", "stage_file", "directory", "to_file",
)


def register_model_function(con: Any, funcs: ImageFunctions, sql_name: str, ref: str, task: str) -> None:
    """Register ``sql_name(image)`` (``sql_name(text)`` for a text model) on ``con`` (see create_model_function)."""
    types = sql_types()
    returns = types["classify"] if task == "classification" else types["embed"]
    if task == TEXT_EMBEDDING:
        con.create_function(sql_name, funcs.bound_to(ref, task), [T.VARCHAR], returns, **COMMON)
    else:
        register_image_function(con, sql_name, funcs.bound_to(ref, task), returns)


def remove_model_function(con: Any, sql_name: str) -> None:
    """Remove ``sql_name`` from ``con``, an image function (macro and UDFs) or a text one."""
    remove_image_function(con, sql_name)
    try:
        con.remove_function(sql_name)
    except Exception:
        pass


def list_model_functions(registry: Registry) -> list[dict[str, str]]:
    return [{"name": name, "model_ref": ref, "task": task} for name, ref, task in registry.store.functions()]


def register_saved_functions(con: Any, registry: Registry, funcs: ImageFunctions) -> None:
    for name, ref, task in registry.store.functions():
        register_model_function(con, funcs, name, ref, task)


def _check_name(registry: Registry, sql_name: str, replace: bool) -> str:
    quote_ident(sql_name, "function name")
    if "." in sql_name:
        raise RegistryError(f"function name {sql_name!r} may not contain a schema; use a plain name")
    lowered = sql_name.lower()
    saved = {name.lower() for name, _, _ in registry.store.functions()}
    if lowered in SIGHTQL_FUNCTIONS:
        raise RegistryError(f"{sql_name!r} is a SightQL function; pick another name for yours")
    if lowered in saved:
        if not replace:
            raise RegistryError(f"a function {sql_name!r} already exists; pass replace=True or drop it first")
        return sql_name
    if registry.store.is_duckdb_function(lowered):
        raise RegistryError(f"{sql_name!r} is already a DuckDB function; pick a name that does not shadow it")
    return sql_name


def create_model_function(
    warehouse: Warehouse, registry: Registry, funcs: ImageFunctions, sql_name: str, ref: str, *,
    replace: bool = False,
) -> None:
    _check_name(registry, sql_name, replace)
    if is_builtin(ref):
        card = registry.predictor(ref).card
    else:
        card = registry.resolve(ref).card  # the reference must name a model now
    task = TEXT_EMBEDDING if card.modality == "text" else card.task
    registry.store.save_function(sql_name, ref, task)
    con = warehouse.connection()
    if replace:
        remove_model_function(con, sql_name)
    register_model_function(con, funcs, sql_name, ref, task)


def drop_model_function(warehouse: Warehouse, registry: Registry, sql_name: str) -> None:
    saved = {name.lower(): name for name, _, _ in registry.store.functions()}
    if sql_name.lower() not in saved:
        raise RegistryError(f"no function {sql_name!r} made with create_function; saved: {', '.join(saved.values()) or 'none'}")
    registry.store.delete_function(sql_name)
    remove_model_function(warehouse.connection(), saved[sql_name.lower()])
