"""Stages known to a warehouse: kept in ``sightql_stages``, listed into ``sightql_stage_files``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa

from sightql.errors import ConfigError, StageError
from sightql.stages.paths import check_stage_name
from sightql.stages.stage import Stage


# A local stage's address is kept relative to the warehouse, so a copied or moved warehouse
# folder uses its own stage files, never the original's. (Older warehouses stored absolute
# file:// addresses; those still work as they are.)
_IN_WAREHOUSE = "warehouse:stages/"


class StageCatalog:
    def __init__(self, con: Any, stages_dir: Path):
        self._con = con
        self._dir = stages_dir
        self._open: dict[str, Stage] = {}

    def create(self, name: str, url: str | None = None, *, exist_ok: bool = False) -> Stage:
        check_stage_name(name)
        if url is not None and not url.startswith("s3://"):
            raise ConfigError(f"stage URL {url!r} is not supported; give an s3://bucket/prefix URL or none for a local stage")
        existing = self._url(name)
        if existing is not None:
            if exist_ok and (url is None or url.rstrip("/") == existing.rstrip("/")):
                return self.get(name)
            raise StageError(f"stage {name!r} already exists ({existing}); pick another name or remove it first")
        stored = url or _IN_WAREHOUSE + name
        stage = Stage(name, self._resolve(stored))
        self._con.execute("INSERT INTO sightql_stages (name, url) VALUES (?, ?)", [name, stored])
        self._open[name] = stage
        return stage

    def _url(self, name: str) -> str | None:
        rows = self._con.execute("SELECT url FROM sightql_stages WHERE name = ?", [name]).fetchall()
        return self._resolve(rows[0][0]) if rows else None

    def _resolve(self, stored: str) -> str:
        """The URL a stored address means: a stage inside this warehouse becomes its folder's file:// URI."""
        if stored.startswith(_IN_WAREHOUSE):
            return (self._dir / stored[len(_IN_WAREHOUSE):]).resolve().as_uri()
        return stored

    def get(self, name: str) -> Stage:
        stage = self._open.get(name)
        if stage is None:
            check_stage_name(name)
            url = self._url(name)
            if url is None:
                known = ", ".join(self.names()) or "none yet"
                raise StageError(f"no stage named {name!r} (stages: {known}); create it with `sightql stage create {name}`")
            stage = Stage(name, url)
            self._open[name] = stage
        return stage

    def names(self) -> list[str]:
        return [r[0] for r in self._con.execute("SELECT name FROM sightql_stages ORDER BY name").fetchall()]

    def list(self) -> list[tuple[str, str]]:
        rows = self._con.execute("SELECT name, url FROM sightql_stages ORDER BY name").fetchall()
        return [(name, self._resolve(url)) for name, url in rows]

    def drop(self, name: str, *, delete_files: bool = False) -> None:
        stage = self.get(name)
        if delete_files and stage.protocol == "file":
            shutil.rmtree(stage.root, ignore_errors=True)
        elif delete_files:
            stage.remove("")
        self._con.execute("DELETE FROM sightql_stage_files WHERE stage = ?", [name])
        self._con.execute("DELETE FROM sightql_stages WHERE name = ?", [name])
        self._open.pop(name, None)

    def refresh(self, names: list[str] | None = None) -> None:
        """Re-list stages into ``sightql_stage_files`` so ``directory()`` sees the files now there."""
        for name in names if names is not None else self.names():
            files = self.get(name).list()
            table = pa.table(
                {
                    "relative_path": [f.relative_path for f in files],
                    "file_url": [f.file_url for f in files],
                    "size": pa.array([f.size for f in files], pa.int64()),
                    "last_modified": pa.array([f.last_modified for f in files], pa.timestamp("us", tz="UTC")),
                    "etag": [f.etag for f in files],
                }
            )
            self._con.register("_sightql_listing", table)
            try:
                self._con.execute("BEGIN TRANSACTION")
                self._con.execute("DELETE FROM sightql_stage_files WHERE stage = ?", [name])
                self._con.execute(
                    "INSERT INTO sightql_stage_files SELECT ?, relative_path, file_url, size, last_modified, etag "
                    "FROM _sightql_listing",
                    [name],
                )
                self._con.execute("COMMIT")
            except Exception:
                self._con.execute("ROLLBACK")
                raise
            finally:
                self._con.unregister("_sightql_listing")
