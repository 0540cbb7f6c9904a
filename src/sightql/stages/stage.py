"""One stage: put, get, list, remove and read files under a root, through fsspec."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sightql.errors import MissingDependencyError, StageError
from sightql.stages.local_files import local_sources
from sightql.stages.paths import safe_relative_path


@dataclass(frozen=True)
class StageFile:
    relative_path: str
    size: int
    last_modified: datetime | None
    etag: str
    file_url: str


def _filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, root path without protocol) for a stage URL."""
    if url.startswith("s3://"):
        try:
            import s3fs
        except ImportError:
            raise MissingDependencyError("s3fs", "s3") from None
        endpoint = os.environ.get("SIGHTQL_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
        client_kwargs = {"endpoint_url": endpoint} if endpoint else {}
        fs = s3fs.S3FileSystem(client_kwargs=client_kwargs, skip_instance_cache=True)
        return fs, url[len("s3://") :].rstrip("/")
    from fsspec.implementations.local import LocalFileSystem

    root = Path(url.removeprefix("file://")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return LocalFileSystem(), root.as_posix()


def _modified(info: dict[str, Any]) -> datetime | None:
    raw = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
    if raw is None:
        return None
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(raw), tz=timezone.utc)


def _etag(info: dict[str, Any]) -> str:
    tag = info.get("ETag") or info.get("etag")
    if tag:
        return str(tag).strip('"')
    mtime = info.get("mtime") or 0
    return f"{int(info.get('size') or 0):x}-{int(float(mtime) * 1e9):x}"


class Stage:
    """Files under ``url``. Every path is checked with :func:`safe_relative_path`."""

    def __init__(self, name: str, url: str):
        self.name = name
        self.url = url
        self.fs, self.root = _filesystem(url)
        self.protocol = "s3" if url.startswith("s3://") else "file"

    def _full(self, relative_path: str, *, allow_empty: bool = False) -> str:
        rel = safe_relative_path(relative_path, allow_empty=allow_empty)
        return f"{self.root}/{rel}" if rel else self.root

    def _relative(self, full: str) -> str:
        full = full.removeprefix("s3://")
        return full[len(self.root) :].lstrip("/")

    def file_url(self, relative_path: str) -> str:
        return f"{self.protocol}://{self._full(relative_path)}"

    # ---- writing -------------------------------------------------------------
    def put(self, source: str | os.PathLike[str], prefix: str = "") -> list[str]:
        """Upload a file, a folder (recursively, keeping relative paths) or a glob."""
        prefix = safe_relative_path(prefix, allow_empty=True)
        pairs = local_sources(str(source))
        written = []
        for local, rel in pairs:
            target = "/".join(p for p in (prefix, rel) if p)
            full = self._full(target)
            self.fs.makedirs(full.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(local, full)
            written.append(safe_relative_path(target))
        return written

    def write_bytes(self, relative_path: str, data: bytes) -> str:
        full = self._full(relative_path)
        self.fs.makedirs(full.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(full, data)
        return safe_relative_path(relative_path)

    def remove(self, path: str) -> list[str]:
        """Remove a file, or every file under a folder prefix. Returns what was removed."""
        removed = [f.relative_path for f in self.matching(path)]
        for rel in removed:
            self.fs.rm_file(self._full(rel))
        return removed

    # ---- reading -------------------------------------------------------------
    def list(self, prefix: str = "") -> list[StageFile]:
        """Every file whose relative path starts with ``prefix`` (as S3 lists), sorted by path."""
        prefix = safe_relative_path(prefix, allow_empty=True)
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._full(folder, allow_empty=True)
        if not self.fs.exists(base):
            return []
        files = []
        for full, info in self.fs.find(base, detail=True).items():
            rel = self._relative(full)
            if info.get("type") == "directory" or not rel.startswith(prefix):
                continue
            files.append(StageFile(rel, int(info.get("size") or 0), _modified(info), _etag(info), self.file_url(rel)))
        return sorted(files, key=lambda f: f.relative_path)

    def matching(self, path: str) -> list[StageFile]:
        """The file at ``path``, or every file in the folder ``path`` (not a mere name prefix)."""
        path = safe_relative_path(path, allow_empty=True)
        if not path:
            return self.list()
        return [f for f in self.list(path) if f.relative_path == path or f.relative_path.startswith(path + "/")]

    def read_bytes(self, relative_path: str) -> bytes:
        full = self._full(relative_path)
        try:
            return self.fs.cat_file(full)
        except FileNotFoundError:
            raise StageError(f"@{self.name}/{relative_path} does not exist; list the stage with `sightql stage ls {self.name}`") from None

    def size(self, relative_path: str) -> int:
        return int(self.fs.size(self._full(relative_path)))

    def get(self, path: str, destination: str | os.PathLike[str]) -> list[Path]:
        """Download a file or a folder prefix into ``destination`` (a folder), keeping relative paths."""
        dest = Path(destination)
        files = self.matching(path)
        if not files:
            raise StageError(f"nothing in @{self.name} matches {path!r}")
        out = []
        base = safe_relative_path(path, allow_empty=True)
        for f in files:
            rel = f.relative_path
            if base and rel != base:
                rel = rel[len(base) :].lstrip("/")
            elif base == rel:
                rel = rel.rsplit("/", 1)[-1]
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(self._full(f.relative_path), str(target))
            out.append(target)
        return out
