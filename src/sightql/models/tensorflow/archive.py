"""Unpack a ``.zip`` or ``.tar.gz`` / ``.tgz`` model archive safely, within a byte limit.

Every entry is checked before anything is written: an absolute path, a ``..`` part, a link (symbolic
or hard), a device or a pipe is refused, so nothing lands outside the target folder (zip-slip), and
the unpacked size may not pass the model limit (counted while writing too, so an archive that
understates its sizes is stopped). Entries are written one by one by this module, never by
``extractall``.
"""

from __future__ import annotations

import posixpath
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import IO, Callable, Iterator

from sightql.errors import ConfigError

ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_CHUNK = 1024 * 1024


def archive_kind(path: Path) -> str | None:
    """'zip' or 'tar' from the file's name, else None."""
    name = path.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        return "zip"
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    return None


def archive_stem(path: Path) -> str:
    """``use_lite.tar.gz`` -> ``use_lite``: the name the unpacked model keeps."""
    name = path.name
    for suffix in (*ZIP_SUFFIXES, *TAR_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "model"
    return name


def _unreadable(path: Path, kind: str, exc: BaseException) -> ConfigError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
    return ConfigError(f"{path} is not a readable {kind} archive ({reason}); download or pack it again")


def _safe_name(path: Path, name: str) -> str:
    """The entry's path inside the target folder ('' for the folder itself); refused if it could leave it."""
    raw = name.replace("\\", "/")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":") or ".." in parts or any(ord(c) < 32 for c in raw):
        raise ConfigError(
            f"{path} has an entry {name[:80]!r} that would be written outside the folder it is unpacked into; "
            "SightQL refuses such archives: pack the model folder again"
        )
    return posixpath.join(*parts) if parts else ""


def _link_refused(path: Path, name: str, what: str) -> ConfigError:
    return ConfigError(
        f"{path} has an entry {name[:80]!r} that is a {what}; SightQL unpacks only files and folders, "
        "so pack the model folder again without links"
    )


def member_names(path: Path) -> list[str]:
    """The names of the archive's entries (read from its index, nothing unpacked)."""
    kind = archive_kind(path)
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                return archive.namelist()
        with tarfile.open(path, "r:*") as archive:
            return archive.getnames()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as exc:
        raise _unreadable(path, "zip" if kind == "zip" else "tar", exc) from None


def extract(path: Path, target: Path, limit: int) -> None:
    """Unpack ``path`` into the folder ``target`` (made here), refusing unsafe entries and more than ``limit`` bytes."""
    kind = archive_kind(path)
    if kind is None:
        raise ConfigError(f"{path} is not a .zip, .tar.gz or .tgz archive; give a SavedModel folder or one of those")
    target.mkdir(parents=True, exist_ok=True)
    try:
        entries = _zip_entries(path) if kind == "zip" else _tar_entries(path)
        written = 0
        for rel, is_dir, opener in entries:
            if not rel:
                continue
            destination = target.joinpath(*rel.split("/"))
            if is_dir:
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with opener() as source, open(destination, "wb") as out:
                while chunk := source.read(_CHUNK):
                    written += len(chunk)
                    if written > limit:  # counted as written: an entry's declared size may lie
                        raise _too_big(path, limit)
                    out.write(chunk)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, ValueError) as exc:
        raise _unreadable(path, kind, exc) from None
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)) and exc.filename:
            raise ConfigError(f"cannot unpack {path} ({exc.strerror}); check the archive and the disk") from None
        raise _unreadable(path, kind, exc) from None


def _too_big(path: Path, limit: int) -> ConfigError:
    return ConfigError(
        f"{path} unpacks to more than the {limit:,}-byte model limit; raise SIGHTQL_MAX_MODEL_BYTES to accept it"
    )


Entry = tuple[str, bool, Callable[[], IO[bytes]]]  # (path inside, is a folder, open its bytes)


def _zip_entries(path: Path) -> Iterator[Entry]:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        checked = []
        for info in infos:
            rel = _safe_name(path, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _link_refused(path, info.filename, "symbolic link")
            if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise _link_refused(path, info.filename, "device, pipe or socket")
            checked.append((rel, info))
        for rel, info in checked:
            yield rel, info.is_dir(), (lambda info=info: archive.open(info))


def _tar_entries(path: Path) -> Iterator[Entry]:
    with tarfile.open(path, "r:*") as archive:
        members = archive.getmembers()
        for member in members:
            _safe_name(path, member.name)
            if member.issym():
                raise _link_refused(path, member.name, "symbolic link")
            if member.islnk():
                raise _link_refused(path, member.name, "hard link")
            if not (member.isfile() or member.isdir()):
                raise _link_refused(path, member.name, "device, pipe or socket")
        for member in members:
            rel = _safe_name(path, member.name)
            yield rel, member.isdir(), (lambda member=member: _tar_file(archive, member))


def _tar_file(archive: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    handle = archive.extractfile(member)
    if handle is None:  # checked above: only files get here
        raise tarfile.TarError(f"{member.name} has no data")
    return handle
