"""Register the SQL functions on a warehouse's DuckDB connection: the built-in ones, ``directory()``
and the named ones saved with ``create_function``."""

from __future__ import annotations

from duckdb import sqltypes as T

from sightql.functions.image_functions import ImageFunctions, sql_types
from sightql.functions.named import register_saved_functions
from sightql.functions.stage_listing import register_stage_listing
from sightql.registry import Registry
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog


def register_functions(warehouse: Warehouse, registry: Registry, stages: StageCatalog) -> ImageFunctions:
    """Register the SQL functions (and the named ones saved in the catalog) on the warehouse's connection."""
    con = warehouse.connection()
    funcs = ImageFunctions(warehouse, registry, stages)
    types = sql_types()
    common = {"type": "arrow", "null_handling": "special", "side_effects": False}
    con.create_function("classify", funcs.classify, [T.VARCHAR, T.BLOB], types["classify"], **common)
    con.create_function("classify_topk", funcs.classify_topk, [T.VARCHAR, T.BLOB, T.INTEGER], types["topk"], **common)
    con.create_function("embed", funcs.embed, [T.VARCHAR, T.BLOB], types["embed"], **common)
    con.create_function("embed_text", funcs.embed_text, [T.VARCHAR, T.VARCHAR], types["embed"], **common)
    con.create_function("image_info", funcs.image_info, [T.BLOB], types["info"], **common)
    con.create_function("stage_file", funcs.stage_file, [T.VARCHAR, T.VARCHAR], T.BLOB, **common)
    register_stage_listing(con, stages)
    register_saved_functions(con, registry, funcs)
    return funcs
