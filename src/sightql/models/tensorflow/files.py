"""Find the TensorFlow SavedModel in what a user gave: a folder, or a ``.zip`` / ``.tar.gz`` of one.

A SavedModel is a folder holding ``saved_model.pb`` (and ``variables/``, ``assets/``). TF-Hub
archives hold those files at their top; a zipped folder holds them one level down; TF Serving
keeps numbered versions (``model/1/saved_model.pb``). All three are found, at most two levels down.
"""

from __future__ import annotations

from pathlib import Path

from sightql.errors import ConfigError
from sightql.models.tensorflow.archive import archive_kind, member_names

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_MAX_DEPTH = 2


def _saved_model_folders(names: list[str]) -> list[str]:
    """Folders (as relative posix paths, '' for the top) that hold a saved_model.pb, at most two levels down."""
    found = []
    for name in names:
        parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
        if parts and parts[-1] in SAVED_MODEL_FILES and len(parts) - 1 <= _MAX_DEPTH:
            folder = "/".join(parts[:-1])
            if folder not in found:
                found.append(folder)
    return sorted(found)


def _folder_entries(folder: Path) -> list[str]:
    entries = []
    for depth_glob in ("*", "*/*", "*/*/*"):
        entries.extend(p.relative_to(folder).as_posix() for p in folder.glob(depth_glob) if p.name in SAVED_MODEL_FILES)
    return entries


def holds_saved_model(path: Path) -> bool:
    """A folder with a SavedModel in it, or a .zip/.tar.gz whose entries hold one (read from its index)."""
    if path.is_dir():
        return bool(_saved_model_folders(_folder_entries(path)))
    if path.is_file() and archive_kind(path) is not None:
        return bool(_saved_model_folders(member_names(path)))
    return False


def saved_model_root(folder: Path, shown: str) -> Path:
    """The one folder inside ``folder`` (itself included) that holds the SavedModel; ``shown`` names it in messages."""
    found = _saved_model_folders(_folder_entries(folder))
    if not found:
        raise ConfigError(
            f"{shown} holds no TensorFlow SavedModel (no saved_model.pb in it or the two folder levels below); "
            "give the folder that tf.saved_model.save or model.export wrote, or a .zip/.tar.gz of it"
        )
    if len(found) > 1:
        listed = ", ".join(f or "." for f in found[:4])
        raise ConfigError(
            f"{shown} holds {len(found)} SavedModels ({listed}); log the folder of the one you mean"
        )
    return folder / found[0] if found[0] else folder


def describe_archive_without_model(path: Path) -> ConfigError:
    return ConfigError(
        f"{path} holds no TensorFlow SavedModel (no saved_model.pb in it); "
        "pack the folder that tf.saved_model.save wrote, or give another model file"
    )
