"""Expand a local file, folder or glob into (file, relative path) pairs."""

from __future__ import annotations

import glob as globlib
import os
from pathlib import Path

from sightql.errors import StageError


def local_sources(source: str) -> list[tuple[str, str]]:
    """(local file, relative path) pairs; folders recurse and skip hidden entries."""
    path = Path(source).expanduser()
    if path.is_file():
        return [(str(path), path.name)]
    if path.is_dir():
        return [
            (str(p), p.relative_to(path).as_posix())
            for p in sorted(path.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        ]
    matches = sorted(m for m in globlib.glob(os.path.expanduser(source), recursive=True) if os.path.isfile(m))
    if not matches:
        raise StageError(f"no file matches {source!r}; check the path, or quote the glob so the shell leaves it alone")
    root = _glob_root(os.path.expanduser(source))
    return [(m, Path(m).relative_to(root).as_posix()) for m in matches]


def _glob_root(pattern: str) -> Path:
    fixed = []
    for part in Path(pattern).parts:
        if any(ch in part for ch in "*?["):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")
