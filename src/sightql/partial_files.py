"""Files and folders written under a temporary name, and removing those whose writer died.

A writer puts ``<final name>.partial-<pid>-<8 hex>`` beside its target and renames it into place
when complete. A process killed outright (SIGKILL, power loss) cannot clean up after itself, so
the next writer or reader of that folder calls :func:`remove_dead_partials`, which removes the
partial files of processes that no longer run and leaves those of live writers alone.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

from sightql.processes import process_alive

_PARTIAL = re.compile(r"\.partial-(\d+)-[0-9a-f]{8}$")


def is_partial_name(name: str) -> bool:
    """Whether ``name`` has the form of a partial file's name (so a final name must not)."""
    return _PARTIAL.search(name) is not None


def partial_path(final: Path) -> Path:
    """Where this process writes ``final`` before renaming it into place."""
    return final.with_name(f"{final.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove_dead_partials(folder: Path) -> list[Path]:
    """Remove the partial files and folders in ``folder`` whose writer no longer runs; returns them."""
    removed = []
    try:
        entries = list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = _PARTIAL.search(entry.name)
        if match is None or process_alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
