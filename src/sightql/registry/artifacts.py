"""Model artifacts on disk: hashing, size limits, and copying into the warehouse atomically."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from sightql.errors import ArtifactIntegrityError, ConfigError

REGISTRY_DIR = Path("models") / "registry"
_CHUNK = 1024 * 1024


def sha256_of(path: Path) -> str:
    """A file's sha256; a folder's is the sha256 over its files' relative paths and hashes."""
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(child.relative_to(path).as_posix().encode() + b"\0" + sha256_of(child).encode() + b"\n")
        return digest.hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def check_size(path: Path, limit: int) -> int:
    size = size_of(path)
    if size > limit:
        raise ConfigError(
            f"{path.name} is {size:,} bytes, over the {limit:,}-byte model limit; "
            "raise SIGHTQL_MAX_MODEL_BYTES to accept it"
        )
    return size


DERIVED_ONNX = "derived.onnx"


def artifact_name(source: Path) -> str:
    """The name a logged file or folder keeps in the warehouse: the user's own (suffix in lower case),
    so that every message about it names the file they gave; ``model<suffix>`` where that name
    cannot be kept (the derived ONNX file's name, or not valid UTF-8)."""
    name = Path(os.path.abspath(source)).name
    if not source.is_dir():
        name = Path(name).stem + Path(name).suffix.lower()
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        name = ""
    if not name or name.lower() == DERIVED_ONNX:
        return "model" + ("" if source.is_dir() else source.suffix.lower())
    return name


def copy_artifact(source: Path, destination: Path) -> None:
    """Copy a file or folder; the caller renames the enclosing temp folder into place."""
    if source.is_dir():
        shutil.copytree(source, destination)
    else:
        shutil.copyfile(source, destination)


def verify(path: Path, expected_sha256: str, ref: str) -> Path:
    """Re-hash what is about to be loaded; a changed artifact is never run."""
    if not path.exists():
        raise ArtifactIntegrityError(
            f"the artifact of {ref} is missing ({path}); log the model again with registry.log_model"
        )
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise ArtifactIntegrityError(
            f"the artifact of {ref} ({path}) changed since it was logged (sha256 {actual[:12]}, "
            f"expected {expected_sha256[:12]}); log the model again with registry.log_model"
        )
    return path


def publish_folder(staging: Path, final: Path) -> None:
    """Rename a complete staging folder into its final place (replacing a stale leftover)."""
    if final.exists():
        # No version row points at it (the caller checked), so it is debris of an interrupted log.
        shutil.rmtree(final)
    os.replace(staging, final)
