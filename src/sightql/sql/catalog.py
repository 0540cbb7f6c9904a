"""Catalog tables SightQL keeps in every warehouse, and the ``directory()`` table macro."""

from __future__ import annotations

from typing import Any

from sightql.sql.file_type import FILE_FIELDS, FILE_SQL, FILE_TYPE_DDL

CATALOG_DDL = [
    """CREATE TABLE IF NOT EXISTS sightql_stages (
        name VARCHAR PRIMARY KEY,
        url VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
    # Stages are listed live by directory(); the listing table older versions kept is gone.
    "DROP TABLE IF EXISTS sightql_stage_files",
    # The model registry: one row per model, per version (its artifact and card), per alias
    # and per metric. Paths are relative to the warehouse folder.
    """CREATE TABLE IF NOT EXISTS sightql_models (
        name VARCHAR PRIMARY KEY,
        description VARCHAR NOT NULL DEFAULT '',
        default_version VARCHAR,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS sightql_model_versions (
        name VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        framework VARCHAR NOT NULL,
        task VARCHAR NOT NULL,
        card_json VARCHAR NOT NULL,
        artifact_path VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL,
        size_bytes BIGINT NOT NULL,
        derived_onnx_path VARCHAR,
        derived_onnx_sha256 VARCHAR,
        trusted BOOLEAN NOT NULL DEFAULT false,
        description VARCHAR NOT NULL DEFAULT '',
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        -- framework-specific load options, e.g. {"format": "state_dict", "architecture": "resnet18"}
        load_options VARCHAR NOT NULL DEFAULT '{}',
        PRIMARY KEY (name, version)
    )""",
    """CREATE TABLE IF NOT EXISTS sightql_model_aliases (
        name VARCHAR NOT NULL,
        alias VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (name, alias)
    )""",
    """CREATE TABLE IF NOT EXISTS sightql_model_metrics (
        name VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        value DOUBLE,
        PRIMARY KEY (name, version, metric)
    )""",
    # SQL functions made with Session.create_function(); registered again on every connect.
    """CREATE TABLE IF NOT EXISTS sightql_functions (
        name VARCHAR PRIMARY KEY,
        model_ref VARCHAR NOT NULL,
        task VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
]

# Training (sightql.train): one row per run, per epoch, per kept checkpoint and per evaluation.
TRAINING_DDL = [
    """CREATE TABLE IF NOT EXISTS training_runs (
        run_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        params VARCHAR NOT NULL,
        started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP,
        error VARCHAR,
        best_epoch INTEGER,
        registered_version VARCHAR
    )""",  # and the columns of TRAINING_UPGRADES below
    """CREATE TABLE IF NOT EXISTS training_log (
        run_id VARCHAR NOT NULL,
        epoch INTEGER NOT NULL,
        train_loss DOUBLE,
        train_acc DOUBLE,
        val_loss DOUBLE,
        val_acc DOUBLE,
        lr DOUBLE,
        seconds DOUBLE,
        images_per_s DOUBLE,
        PRIMARY KEY (run_id, epoch)
    )""",
    """CREATE TABLE IF NOT EXISTS training_checkpoints (
        run_id VARCHAR NOT NULL,
        epoch INTEGER NOT NULL,
        path VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL,
        size_bytes BIGINT NOT NULL,
        created_at TIMESTAMP NOT NULL,
        PRIMARY KEY (run_id, epoch)
    )""",
    """CREATE TABLE IF NOT EXISTS training_evaluations (
        run_id VARCHAR NOT NULL,
        dataset VARCHAR NOT NULL,
        model_version VARCHAR,
        accuracy DOUBLE,
        report VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        PRIMARY KEY (run_id, dataset)
    )""",
]
# training_runs' columns added since it was first made, for new and older warehouses alike (added when the
# warehouse is opened for writing): the linear probe's (epoch 0) validation figures, the best epoch's
# validation accuracy, and why training stopped.
TRAINING_UPGRADES = [
    f"ALTER TABLE training_runs ADD COLUMN IF NOT EXISTS {column} {sql_type}"
    for column, sql_type in (("probe_val_acc", "DOUBLE"), ("probe_val_loss", "DOUBLE"), ("best_val_acc", "DOUBLE"),
                             ("stop_reason", "VARCHAR"))
]
CATALOG_DDL += TRAINING_DDL + TRAINING_UPGRADES

# The files of a stage reference ('@stage' or '@stage/prefix'), listed live through the stage's
# own filesystem by the SQL function _sightql_stage_listing (sightql.functions.stage_listing): the
# listing is current in every query, and the function is found whatever the caller's casing.
# {ref} is the SQL expression giving the reference.
_LISTING_COLUMNS = "f.relative_path, f.file_url, f.size, f.last_modified, f.etag"
_LISTING_FROM = "FROM (SELECT unnest(_sightql_stage_listing({ref})) AS f)"
STAGE_LISTING_SELECT = f"SELECT {_LISTING_COLUMNS}\n    {_LISTING_FROM}"

# directory('@stage') or directory('@stage/prefix'): the stage's files as a table, with each file's
# FILE value in the column ``file`` (spelled as the STRUCT, so it binds where the type is not made:
# a read-only session of an older warehouse).
_FILE_PACK = "struct_pack(" + ", ".join(f"{name} := f.{name}" for name, _, _ in FILE_FIELDS) + f")::{FILE_SQL}"
DIRECTORY_MACRO = f"""
CREATE OR REPLACE TEMP MACRO directory(stage_ref) AS TABLE
    SELECT {_LISTING_COLUMNS}, {_FILE_PACK} AS file
    {_LISTING_FROM.format(ref="stage_ref")}
    ORDER BY f.relative_path
"""


def ensure_catalog(con: Any, read_only: bool) -> None:
    """Create the catalog tables (``directory()`` is made with its listing function, by sightql.functions.stage_listing)."""
    if not read_only:
        for ddl in (FILE_TYPE_DDL, *CATALOG_DDL):
            con.execute(ddl)
