"""One stage: put, get, list, remove and read files under a root, through fsspec."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from sightql.config import Settings
from sightql.errors import MissingDependencyError, StageError
from sightql.partial_files import partial_path, remove_dead_partials
from sightql.stages.local_files import local_sources
from sightql.stages.paths import INTERNAL_STAGE, content_hash, safe_relative_path
from sightql.stages.sandbox import LocalRoot

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageFile:
    relative_path: str
    size: int
    last_modified: datetime | None
    etag: str
    file_url: str


def _filesystem(url: str, endpoint_url: str | None) -> tuple[Any, str]:
    """(fsspec filesystem, root path without protocol) for a stage URL (s3://: at ``endpoint_url``, else AWS's)."""
    if url.startswith("s3://"):
        try:
            import s3fs
        except ImportError:
            raise MissingDependencyError("s3fs", "s3") from None
        client_kwargs = {"endpoint_url": endpoint_url} if endpoint_url else {}
        fs = s3fs.S3FileSystem(client_kwargs=client_kwargs, skip_instance_cache=True)
        return fs, url[len("s3://") :].rstrip("/")
    from fsspec.implementations.local import LocalFileSystem

    root = Path(url.removeprefix("file://")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return LocalFileSystem(), root.as_posix()


def s3_endpoint(settings: Settings) -> str | None:
    """The S3-compatible endpoint of s3:// stages: the ``s3_endpoint_url`` setting, else ``AWS_ENDPOINT_URL``."""
    return settings.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL")


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
    """Files under ``url``. Every path is checked with :func:`safe_relative_path`; a local stage's
    paths also by their real location (see :mod:`sightql.stages.sandbox`), so no link leads out.

    ``endpoint_url``: the S3-compatible endpoint of an s3:// stage (None: AWS's); the
    :class:`~sightql.stages.catalog.StageCatalog` passes :func:`s3_endpoint` of the warehouse's settings."""

    def __init__(self, name: str, url: str, endpoint_url: str | None = None):
        self.name = name
        self.url = url
        self.endpoint_url = endpoint_url
        self.fs, self.root = _filesystem(url, endpoint_url)
        self.protocol = "s3" if url.startswith("s3://") else "file"
        self._local = LocalRoot(self.root, f"@{name}") if self.protocol == "file" else None
        # The warehouse's internal stage: files named by their SHA-256, which is their etag, written
        # only by load_images and tables externalize (write_new), never by put/write_bytes/remove.
        self.internal = name == INTERNAL_STAGE

    def _tag(self, relative_path: str, info: dict[str, Any]) -> str:
        """A file's etag: for a content-addressed file of the internal stage, its SHA-256 (so a FILE value's
        etag names its bytes wherever the stage lives); otherwise S3's ETag or a local size-and-mtime tag."""
        return (content_hash(relative_path) if self.internal else None) or _etag(info)

    def _check_writable(self) -> None:
        if self.internal:
            raise StageError(
                f"@{self.name} is the warehouse's own image store, written only by `sightql load` and "
                "`sightql tables externalize`; put your files in a stage of your own (`sightql stage create NAME`)"
            )

    def _full(self, relative_path: str, *, allow_empty: bool = False) -> str:
        rel = safe_relative_path(relative_path, allow_empty=allow_empty)
        return f"{self.root}/{rel}" if rel else self.root

    def _relative(self, full: str) -> str:
        full = full.removeprefix("s3://")
        return full[len(self.root) :].lstrip("/")

    def _source(self, relative_path: str) -> str:
        """Where to read the file ``relative_path`` from (locally: its real path, checked to be a file inside)."""
        if self._local is None:
            return self._full(relative_path)
        return self._local.file(safe_relative_path(relative_path))

    def _target(self, relative_path: str) -> str:
        """Where to write ``relative_path`` (parent folders made; locally: its real path, checked to be inside)."""
        if self._local is None:
            full = self._full(relative_path)
            self.fs.makedirs(full.rsplit("/", 1)[0], exist_ok=True)
            return full
        return self._local.target(safe_relative_path(relative_path))

    def file_url(self, relative_path: str) -> str:
        full = self._full(relative_path)
        return Path(full).as_uri() if self._local is not None else f"{self.protocol}://{full}"

    # ---- writing -------------------------------------------------------------
    def put(self, source: str | os.PathLike[str], prefix: str = "") -> list[str]:
        """Upload a file, a folder (recursively, keeping relative paths) or a glob."""
        self._check_writable()
        prefix = safe_relative_path(prefix, allow_empty=True)
        pairs = local_sources(str(source))
        written = []
        for local, rel in pairs:
            target = safe_relative_path("/".join(p for p in (prefix, rel) if p))
            self.fs.put_file(local, self._target(target))
            written.append(target)
        return written

    def write_bytes(self, relative_path: str, data: bytes) -> str:
        self._check_writable()
        self.fs.pipe_file(self._target(relative_path), data)
        return safe_relative_path(relative_path)

    def write_new(self, relative_path: str, data: bytes) -> bool:
        """Write ``data`` at ``relative_path`` unless a file is already there (then False: it is never
        rewritten). A kill never leaves part of a file under the final name: locally the bytes go to a
        partial name beside it, renamed into place once complete; an S3 put is atomic by itself."""
        rel = safe_relative_path(relative_path)
        target = self._target(rel)
        if self._local is not None:
            remove_dead_partials(Path(target).parent)  # left by writers killed part way
        if self.fs.exists(target):
            return False
        if self._local is None:
            self.fs.pipe_file(target, data)
            return True
        final = Path(target)
        partial = partial_path(final)
        try:
            partial.write_bytes(data)
            os.replace(partial, final)  # a racing writer of the same name wrote the same bytes
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise StageError(f"cannot write @{self.name}/{rel}: {exc.strerror or exc}") from None
        return True

    def remove(self, path: str, *, missing_ok: bool = False) -> list[str]:
        """Remove a file, or every file under a folder. Returns what was removed; nothing matching is an
        error unless ``missing_ok``. A path through a link leading outside is refused; a link to a
        file inside is removed itself, never its target."""
        self._check_writable()
        removed = [f.relative_path for f in self.matching(path)]
        if not removed and not missing_ok:
            raise self._nothing_matches(path)
        for rel in removed:
            if self._local is not None:
                self._local.inside(os.path.dirname(rel))  # checked again at delete time: still inside
            self.fs.rm_file(self._full(rel))
        return removed

    def _nothing_matches(self, path: str) -> StageError:
        return StageError(f"nothing in @{self.name} matches {path!r}; list the stage with `sightql stage ls @{self.name}`")

    # ---- reading -------------------------------------------------------------
    def scan(self, prefix: str = "") -> tuple[list[StageFile], list[tuple[str, str]]]:
        """Every file whose relative path starts with ``prefix`` (as S3 lists), sorted by path, and the
        local entries skipped with why (links leading outside or to folders, pipes, ...)."""
        prefix = safe_relative_path(prefix, allow_empty=True)
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if self._local is not None:
            found, skipped = self._local.walk(folder)
            files = [
                StageFile(e.relative_path, e.size, _modified({"mtime": e.mtime}),
                          self._tag(e.relative_path, {"size": e.size, "mtime": e.mtime}), self.file_url(e.relative_path))
                for e in found
                if e.relative_path.startswith(prefix)
            ]
            skipped = [(rel, why) for rel, why in skipped if rel.startswith(prefix)]
        else:
            files, skipped = self._scan_remote(folder, prefix), []
        return sorted(files, key=lambda f: f.relative_path), sorted(skipped)

    def _scan_remote(self, folder: str, prefix: str) -> list[StageFile]:
        base = self._full(folder, allow_empty=True)
        if not self.fs.exists(base):
            return []
        files = []
        for full, info in self.fs.find(base, detail=True).items():
            rel = self._relative(full)
            if info.get("type") == "directory" or not rel.startswith(prefix):
                continue
            files.append(StageFile(rel, int(info.get("size") or 0), _modified(info), self._tag(rel, info), self.file_url(rel)))
        return files

    def list(self, prefix: str = "") -> list[StageFile]:
        """Every file whose relative path starts with ``prefix`` (as S3 lists), sorted by path.

        Local entries that are not files inside the stage are left out, with a logged warning."""
        files, skipped = self.scan(prefix)
        if skipped:
            shown = "; ".join(f"@{self.name}/{rel}: {why}" for rel, why in skipped[:5])
            more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
            _log.warning("listing @%s skipped %d entr%s: %s%s", self.name, len(skipped),
                         "y" if len(skipped) == 1 else "ies", shown, more)
        return files

    def matching(self, path: str) -> list[StageFile]:
        """The file at ``path``, or every file in the folder ``path`` (not a mere name prefix). A path
        through a link leading outside is refused (StagePathError), not "nothing matches"."""
        path = safe_relative_path(path, allow_empty=True)
        if self._local is not None:
            self._local.inside(path)
        if not path:
            return self.list()
        return [f for f in self.list(path) if f.relative_path == path or f.relative_path.startswith(path + "/")]

    def read_bytes(self, relative_path: str) -> bytes:
        try:
            return self.fs.cat_file(self._source(relative_path))
        except FileNotFoundError:
            raise StageError(f"@{self.name}/{relative_path} does not exist; list the stage with `sightql stage ls @{self.name}`") from None
        except OSError as exc:
            raise StageError(f"cannot read @{self.name}/{relative_path}: {exc.strerror or exc}") from None

    def read_checked(self, relative_path: str, check: Callable[[StageFile], None]) -> bytes:
        """The file's bytes, after ``check`` (which raises to refuse) has seen what the file is now.

        A local file is opened once: its path resolved and checked once, and ``check`` given the
        open file's own size and mtime, taken after the read, so bytes changed while they were read
        are refused too (half the path work of :meth:`stat` then :meth:`read_bytes`). An S3 file is
        checked with a HEAD before its GET, so changed bytes are never downloaded."""
        if self._local is None:
            check(self.stat(relative_path))
            return self.read_bytes(relative_path)
        rel = safe_relative_path(relative_path)
        try:
            with open(self._local.file(rel), "rb") as handle:
                data = handle.read()
                info = os.fstat(handle.fileno())
        except FileNotFoundError:
            raise StageError(f"@{self.name}/{rel} does not exist; list the stage with `sightql stage ls @{self.name}`") from None
        except OSError as exc:
            raise StageError(f"cannot read @{self.name}/{rel}: {exc.strerror or exc}") from None
        facts = {"size": info.st_size, "mtime": info.st_mtime}
        # An internal file's etag is the SHA-256 its name carries; the bytes in hand are hashed (about 2 ms
        # for a 3 MB photo), so a file overwritten in place is refused however its size came out.
        etag = hashlib.sha256(data).hexdigest() if self.internal else _etag(facts)
        check(StageFile(rel, info.st_size, _modified(facts), etag, self.file_url(rel)))
        return data

    def size(self, relative_path: str) -> int:
        return int(self.fs.size(self._source(relative_path)))

    def stat(self, relative_path: str) -> StageFile:
        """The file at ``relative_path`` as a listing would show it (size, last modified, etag), read now."""
        try:
            info = self.fs.info(self._source(relative_path))  # a local stage's _source stats the file too
        except FileNotFoundError:
            raise StageError(f"@{self.name}/{relative_path} does not exist; list the stage with `sightql stage ls @{self.name}`") from None
        except OSError as exc:
            raise StageError(f"cannot read @{self.name}/{relative_path}: {exc.strerror or exc}") from None
        if info.get("type") == "directory":
            raise StageError(f"@{self.name}/{relative_path} is a folder, not a file; name a file in it")
        rel = safe_relative_path(relative_path)
        return StageFile(rel, int(info.get("size") or 0), _modified(info), self._tag(rel, info), self.file_url(rel))

    def get(self, path: str, destination: str | os.PathLike[str]) -> list[Path]:
        """Download a file or a folder prefix into ``destination`` (a folder), keeping relative paths."""
        dest = Path(destination)
        base = safe_relative_path(path, allow_empty=True)
        files = self.matching(path)
        if not files:
            raise self._nothing_matches(path)
        out = []
        for f in files:
            rel = f.relative_path
            if base and rel != base:
                rel = rel[len(base) :].lstrip("/")
            elif base == rel:
                rel = rel.rsplit("/", 1)[-1]
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(self._source(f.relative_path), str(target))
            out.append(target)
        return out
