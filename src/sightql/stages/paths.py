"""Path rules for stages: nothing may escape a stage's root."""

from __future__ import annotations

import posixpath
import re

from sightql.errors import ConfigError, StagePathError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")

# The warehouse's own stage, where ``load_images`` keeps image files by content (see
# :mod:`sightql.stages.internal`): read like any stage, never created, dropped or written by users.
INTERNAL_STAGE = "_internal"


def check_stage_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ConfigError(
            f"stage name {name!r} is not allowed; use letters, digits, '_' or '-', starting with a letter"
        )
    return name


def safe_relative_path(path: str, *, allow_empty: bool = False) -> str:
    """Normalise a path inside a stage; refuse absolute paths, '..' and control characters."""
    if not isinstance(path, str):
        raise StagePathError(f"stage path must be text, not {type(path).__name__}")
    raw = path.replace("\\", "/")
    if any(ord(ch) < 32 for ch in raw):
        raise StagePathError(f"stage path {path!r} contains a control character; rename the file")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw) or "://" in raw:
        raise StagePathError(f"stage path {path!r} is absolute; give a path relative to the stage")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise StagePathError(f"stage path {path!r} goes outside the stage with '..'; remove the '..' parts")
    clean = posixpath.join(*parts) if parts else ""
    if not clean and not allow_empty:
        raise StagePathError("stage path is empty; name a file in the stage")
    return clean


def split_stage_ref(ref: str) -> tuple[str, str]:
    """'@photos/cats/a.jpg' -> ('photos', 'cats/a.jpg'); '@photos' -> ('photos', '')."""
    if not ref.startswith("@"):
        raise ConfigError(f"{ref!r} is not a stage reference; write it as '@stage' or '@stage/path'")
    name, _, rest = ref[1:].partition("/")
    return check_stage_name(name), safe_relative_path(rest, allow_empty=True)


def folder_label(relative_path: str) -> str | None:
    """``train/NORMAL/x.jpeg`` -> ``NORMAL``: the class a folder-labelled stage gives a file (None at the top)."""
    return relative_path.rsplit("/", 2)[-2] if "/" in relative_path else None


_CONTENT_PATH = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{2}/([0-9a-f]{64})(?:\.[a-z0-9]{1,8})?$")


def content_path(sha256: str, extension: str) -> str:
    """Where the internal stage keeps bytes whose SHA-256 is ``sha256``: ``ab/cd/<sha256>.<extension>``
    (two folder levels keep any one folder small at millions of files)."""
    ext = re.sub(r"[^a-z0-9]", "", extension.lower())[:8]
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}" + (f".{ext}" if ext else "")


def content_hash(relative_path: str) -> str | None:
    """The SHA-256 a content-addressed path names (see :func:`content_path`); None for any other path."""
    match = _CONTENT_PATH.match(relative_path)
    return match.group(1) if match else None
