"""Stages known to a warehouse: kept in ``sightql_stages`` and, for the session, in memory.

The warehouse's internal stage (``@_internal``, where ``load_images`` keeps image files by content)
is a row of the same table, made on first use (``<home>/stages/_internal``) or by ``sightql init
--storage s3://bucket/prefix``; every process opening the warehouse finds it there. Users cannot
create, drop or write it.

The session holds its warehouse alone (one process, one session at a time), so the table is
read once when it opens and kept current by :meth:`StageCatalog.create` and :meth:`drop`.
Looking a stage up never runs a query, so SQL functions (``stage_file``, ``directory``) can
look stages up while DuckDB runs the query that calls them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sightql.errors import ConfigError, StageError
from sightql.sql.warehouse import Warehouse
from sightql.stages.paths import INTERNAL_STAGE, check_stage_name
from sightql.stages.stage import Stage, s3_endpoint


# A local stage's address is kept relative to the warehouse, so a copied or moved warehouse
# folder uses its own stage files, never the original's. (Older warehouses stored absolute
# file:// addresses; those still work as they are.)
_IN_WAREHOUSE = "warehouse:stages/"


class StageCatalog:
    def __init__(self, warehouse: Warehouse):
        self._warehouse = warehouse
        self._dir = warehouse.stages_dir
        # name -> stored address, as in sightql_stages; and the stages opened so far
        with warehouse.cursor() as cursor:
            self._stored: dict[str, str] = dict(cursor.execute("SELECT name, url FROM sightql_stages").fetchall())
        self._open: dict[str, Stage] = {}

    def create(self, name: str, url: str | None = None, *, exist_ok: bool = False) -> Stage:
        _check_not_internal(name)
        if url is not None and not url.startswith("s3://"):
            raise ConfigError(f"stage URL {url!r} is not supported; give an s3://bucket/prefix URL or none for a local stage")
        if name in self._stored:
            existing = self._resolve(self._stored[name])
            if exist_ok and (url is None or url.rstrip("/") == existing.rstrip("/")):
                return self.get(name)
            raise StageError(f"stage {name!r} already exists ({existing}); pick another name or remove it first")
        stored = url or _IN_WAREHOUSE + name
        stage = self._opened(name, stored)
        with self._warehouse.cursor() as cursor:
            cursor.execute("INSERT INTO sightql_stages (name, url) VALUES (?, ?)", [name, stored])
        self._stored[name] = stored
        self._open[name] = stage
        return stage

    def _opened(self, name: str, stored: str) -> Stage:
        """A Stage over the stored address; an s3:// one at the endpoint the warehouse's settings name."""
        return Stage(name, self._resolve(stored), s3_endpoint(self._warehouse.settings))

    def _resolve(self, stored: str) -> str:
        """The URL a stored address means: a stage inside this warehouse becomes its folder's file:// URI."""
        if stored.startswith(_IN_WAREHOUSE):
            return (self._dir / stored[len(_IN_WAREHOUSE):]).resolve().as_uri()
        return stored

    def get(self, name: str) -> Stage:
        """The stage called ``name``; runs no query (safe inside a SQL function)."""
        stage = self._open.get(name)
        if stage is None:
            check_stage_name(name)
            stored = self._stored.get(name)
            if stored is None:
                known = ", ".join(self.names()) or "none yet"
                raise StageError(f"no stage named {name!r} (stages: {known}); create it with `sightql stage create {name}`")
            stage = self._open.setdefault(name, self._opened(name, stored))
        return stage

    def names(self) -> list[str]:
        return sorted(self._stored)

    def list(self) -> list[tuple[str, str]]:
        return [(name, self._resolve(self._stored[name])) for name in self.names()]

    def drop(self, name: str, *, delete_files: bool = False) -> None:
        _check_not_internal(name)
        stage = self.get(name)
        if delete_files and stage.protocol == "file":
            shutil.rmtree(stage.root, ignore_errors=True)  # removes links themselves, never what they point to
        elif delete_files:
            stage.remove("", missing_ok=True)
        with self._warehouse.cursor() as cursor:
            cursor.execute("DELETE FROM sightql_stages WHERE name = ?", [name])
        self._stored.pop(name, None)
        self._open.pop(name, None)

    # ---- the internal stage ----------------------------------------------------------------
    def internal(self) -> Stage:
        """The warehouse's internal stage, recorded in the catalog on first use (inside the warehouse
        folder unless ``set_internal_storage`` chose an s3:// prefix first)."""
        if INTERNAL_STAGE not in self._stored:
            self._record_internal(_IN_WAREHOUSE + INTERNAL_STAGE)
        return self.get(INTERNAL_STAGE)

    def set_internal_storage(self, url: str) -> Stage:
        """Put the internal stage at ``url`` (``s3://bucket/prefix``; credentials and endpoint from the
        environment, never stored). Only before it holds anything: FILE values name it, so it never moves."""
        if not url.startswith("s3://") or not url[len("s3://"):].strip("/"):
            raise ConfigError(f"storage {url!r} is not supported; give an s3://bucket/prefix URL")
        try:  # reachable with this environment's credentials and endpoint (a missing bucket lists as empty)
            stage = self._opened(INTERNAL_STAGE, url)
            problem = None if stage.fs.exists(stage.root.split("/")[0]) else "no such bucket"
            stage.list()
        except Exception as exc:  # noqa: BLE001 - any failure of the store means the same to the user
            problem = str(exc)
        if problem:
            raise StageError(f"cannot list {url} ({problem}); check the bucket, AWS credentials and AWS_ENDPOINT_URL")
        stored = self._record_internal(url.rstrip("/"))
        if stored.rstrip("/") != url.rstrip("/"):
            raise ConfigError(
                f"this warehouse already keeps its images at {self._resolve(stored)}; the storage is set once, "
                "before the first load: init a new warehouse with --storage and load the images there"
            )
        return self.get(INTERNAL_STAGE)

    def _record_internal(self, stored: str) -> str:
        """Record the internal stage at ``stored`` unless some process recorded it first; what is recorded."""
        with self._warehouse.cursor() as cursor:
            cursor.execute("INSERT INTO sightql_stages (name, url) VALUES (?, ?) ON CONFLICT DO NOTHING",
                           [INTERNAL_STAGE, stored])
            (recorded,) = cursor.execute("SELECT url FROM sightql_stages WHERE name = ?", [INTERNAL_STAGE]).fetchone()
        self._stored[INTERNAL_STAGE] = recorded
        return recorded


def _check_not_internal(name: str) -> None:
    check_stage_name(name)
    if name == INTERNAL_STAGE:
        raise ConfigError(
            f"stage name {name!r} is reserved for the warehouse's own image store; pick another name"
        )
