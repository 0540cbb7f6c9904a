"""A local stage's sandbox: every path is checked by where it really is, symbolic links included.

A path is allowed only while its real path (``os.path.realpath``: every link resolved) lies
inside the real path of the stage's root. Listing walks the folder itself and never follows a
link to a folder, so each file is listed once, by its own path, and a folder is never listed
as a file. S3 stages have no links; they need only :func:`sightql.stages.paths.safe_relative_path`.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from sightql.errors import StageError, StagePathError


@dataclass(frozen=True)
class LocalEntry:
    """A regular file found by :meth:`LocalRoot.walk`: its path under the walked folder, size and mtime."""

    relative_path: str
    size: int
    mtime: float


class LocalRoot:
    def __init__(self, root: str, label: str):
        self.root = os.path.realpath(root)
        self.label = label  # '@name', for messages

    def _shown(self, relative_path: str) -> str:
        return f"{self.label}/{relative_path}" if relative_path else self.label

    def _is_inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)

    def inside(self, relative_path: str) -> str:
        """The real path of ``relative_path`` (already checked by safe_relative_path); refused if it leads outside."""
        real = os.path.realpath(os.path.join(self.root, relative_path))
        if not self._is_inside(real):
            raise StagePathError(
                f"{self._shown(relative_path)} is a symbolic link (or lies under one) that leads outside the stage; "
                "put the file itself into the stage instead of a link to it"
            )
        return real

    def file(self, relative_path: str) -> str:
        """The real path of the regular file at ``relative_path``, to read from."""
        real = self.inside(relative_path)
        mode = os.stat(real).st_mode  # FileNotFoundError: the caller says so
        if stat.S_ISDIR(mode):
            raise StageError(f"{self._shown(relative_path)} is a folder, not a file; name a file inside it")
        if not stat.S_ISREG(mode):
            raise StageError(f"{self._shown(relative_path)} is not a regular file (a pipe, socket or device); remove it")
        return real

    def target(self, relative_path: str) -> str:
        """The real path to write ``relative_path`` to; its missing parent folders are made, inside the root only."""
        real = self.inside(relative_path)
        if os.path.isdir(real):
            raise StageError(f"{self._shown(relative_path)} is a folder; name a file to write")
        try:
            os.makedirs(os.path.dirname(real), exist_ok=True)
        except OSError as exc:
            raise StageError(f"cannot write {self._shown(relative_path)}: {exc.strerror}; pick another path") from None
        return real

    def walk(self, folder: str) -> tuple[list[LocalEntry], list[tuple[str, str]]]:
        """Regular files under ``folder`` (relative paths from the stage root, by the names walked), and
        the entries skipped with why: links that lead outside or to a folder, broken links, pipes and the like."""
        files: list[LocalEntry] = []
        skipped: list[tuple[str, str]] = []
        start = self.inside(folder)
        if not os.path.isdir(start):
            return files, skipped
        pending = [(start, folder)]
        while pending:
            real_dir, rel_dir = pending.pop()
            try:
                entries = list(os.scandir(real_dir))
            except OSError as exc:
                skipped.append((rel_dir, f"cannot be listed: {exc.strerror}"))
                continue
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.is_symlink():
                    self._linked(entry.path, rel, files, skipped)
                elif entry.is_dir(follow_symlinks=False):
                    pending.append((entry.path, rel))
                elif entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    files.append(LocalEntry(rel, info.st_size, info.st_mtime))
                else:
                    skipped.append((rel, "not a regular file (a pipe, socket or device)"))
        return files, skipped

    def _linked(self, path: str, rel: str, files: list[LocalEntry], skipped: list[tuple[str, str]]) -> None:
        """A link is listed by its own path when it leads to a regular file inside the root; else skipped."""
        real = os.path.realpath(path)
        if not self._is_inside(real):
            skipped.append((rel, "a symbolic link that leads outside the stage"))
            return
        try:
            info = os.stat(real)
        except OSError:
            skipped.append((rel, "a broken symbolic link"))
            return
        if stat.S_ISDIR(info.st_mode):
            skipped.append((rel, "a symbolic link to a folder (links to folders are not followed)"))
        elif stat.S_ISREG(info.st_mode):
            files.append(LocalEntry(rel, info.st_size, info.st_mtime))
        else:
            skipped.append((rel, "not a regular file (a pipe, socket or device)"))
