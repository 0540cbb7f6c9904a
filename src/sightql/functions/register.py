"""Register the SQL functions on a warehouse's DuckDB connection: the built-in ones, ``to_file()``,
``directory()`` and the named ones saved with ``create_function``."""

from __future__ import annotations

from duckdb import sqltypes as T

from sightql.functions.image_args import COMMON, register_image_function, to_file_function
from sightql.functions.image_functions import ImageFunctions, sql_types
from sightql.functions.named import register_saved_functions
from sightql.functions.stage_listing import register_stage_listing
from sightql.functions.vision_language import register_vision_language
from sightql.functions.zero_shot import register_zero_shot
from sightql.registry import Registry
from sightql.sql.file_type import FILE_SQL
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog

MODEL = (("model", "VARCHAR"),)


def register_functions(warehouse: Warehouse, registry: Registry, stages: StageCatalog) -> ImageFunctions:
    """Register the SQL functions (and the named ones saved in the catalog) on the warehouse's connection.

    The image functions take a BLOB or a FILE (see :mod:`sightql.functions.image_args`)."""
    con = warehouse.connection()
    funcs = ImageFunctions(warehouse, registry, stages)
    types = sql_types()
    register_image_function(con, "classify", funcs.classify, types["classify"], MODEL)
    register_image_function(con, "classify_topk", funcs.classify_topk, types["topk"], MODEL, (("k", "INTEGER"),))
    register_image_function(con, "embed", funcs.embed, types["embed"], MODEL)
    register_image_function(con, "image_info", funcs.image_info, types["info"])
    con.create_function("embed_text", funcs.embed_text, [T.VARCHAR, T.VARCHAR], types["embed"], **COMMON)
    con.create_function("stage_file", funcs.stage_file, [T.VARCHAR, T.VARCHAR], T.BLOB, **COMMON)
    con.create_function(
        "to_file", to_file_function(warehouse, stages), [T.VARCHAR, T.VARCHAR], con.type(FILE_SQL), **COMMON
    )
    register_stage_listing(con, stages)
    register_saved_functions(con, registry, funcs)
    register_zero_shot(con, warehouse, registry, stages)
    register_vision_language(con, warehouse, stages)
    return funcs
