"""``Registry.log_model``: copy, check, convert and record one model version.

Files are written under a staging folder (``<version>.partial-<pid>-<hex>``) and renamed into
``models/registry/<name>/<version>/`` only once complete; the catalog rows are written in one
transaction after that. An interrupted or refused log leaves no version row and no folder; the
staging folder of a log that was killed outright is removed by the next log of that model.
The artifact keeps the user's file name, so every message about it names the file they gave.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from sightql.errors import ConfigError, RegistryError
from sightql.models.card import RUNTIMES
from sightql.models.loader import is_builtin
from sightql.partial_files import is_partial_name, partial_path, remove_dead_partials
from sightql.registry.artifacts import REGISTRY_DIR, publish_folder
from sightql.registry.derive import derive_onnx
from sightql.registry.inputs import InputArg, LabelsArg, read_labels
from sightql.models.zero_shot.layouts import FRAMEWORKS as ZERO_SHOT_FRAMEWORKS
from sightql.registry.intake import framework_of, take_in
from sightql.registry.loading import FRAMEWORKS
from sightql.registry.probe import build_record
from sightql.registry.records import VersionRecord
from sightql.registry.refs import LATEST, check_model_name, check_tag, version_number
from sightql.registry.saved_models import SignatureChoice
from sightql.registry.store import RegistryStore
from sightql.registry.zero_shot import ZERO_SHOT, zero_shot_record
from sightql.sql.warehouse import Warehouse

TASKS = ("classification", "embedding", ZERO_SHOT)
NEEDS_LABELS = "a classification model needs labels= (a list or a text file, one per line), or pass task='embedding'"


def next_version(existing: list[str]) -> str:
    numbers = [n for n in map(version_number, existing) if n is not None]
    return f"v{max(numbers, default=0) + 1}"


def choose_version(store: RegistryStore, name: str, version: str | None) -> str:
    existing = store.version_names(name)
    if version is None:
        return next_version(existing)
    check_tag(version, "version")
    if version == LATEST:
        raise ConfigError("'latest' is a reference, not a version name; leave version=None to number it automatically")
    if is_partial_name(version):
        raise ConfigError(f"version {version!r} has the form of an unfinished copy's name; pick another version name")
    if version in existing:
        raise RegistryError(f"{name}@{version} already exists; leave version=None for the next number or pick another name")
    if version in store.alias_names(name):
        raise RegistryError(f"{version!r} is an alias of {name}; pick a version name that is not an alias")
    return version


def log_model(
    warehouse: Warehouse,
    store: RegistryStore,
    model_or_path: Any,
    name: str,
    version: str | None = None,
    framework: str = "auto",
    task: str = "classification",
    labels: LabelsArg = None,
    input: InputArg = None,
    metrics: Mapping[str, float] | None = None,
    description: str = "",
    trust: bool = False,
    architecture: str | None = None,
    output: str | None = None,
    choice: SignatureChoice = SignatureChoice(),
    templates: Sequence[str] | None = None,
    runtime: str = "fp32",
    provenance: Mapping[str, Any] | None = None,
) -> VersionRecord:
    """``runtime``: how the card says to run it ('fp32', 'int8' for a quantized ONNX file, 'fp16' on a GPU).
    ``provenance``: how the file was made (e.g. by ``quantize``), kept in the version's load options."""
    check_model_name(name)
    if is_builtin(name):
        raise RegistryError(f"{name!r} is a built-in model; log yours under another name")
    if task not in TASKS:
        raise ConfigError(f"task={task!r} is not valid; use 'classification', 'embedding' or 'zero-shot'")
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime={runtime!r} is not valid; use one of {', '.join(RUNTIMES)}")
    if framework != "auto" and framework not in FRAMEWORKS:
        raise ConfigError(f"framework={framework!r} is not known; use 'auto' or one of {', '.join(FRAMEWORKS)}")
    label_list = read_labels(labels)
    told = framework_of(model_or_path, framework, trust)
    task = _zero_shot_task(told, task, label_list, templates)
    # A SavedModel's signature tells a text model from an image one only once it is opened (_stage).
    maybe_text = told in ("sentence-transformers", "tensorflow")
    if task == "classification" and not label_list and not maybe_text:
        raise ConfigError(NEEDS_LABELS)
    metric_values = {str(k): float(v) for k, v in (metrics or {}).items()}
    version = choose_version(store, name, version)

    home = warehouse.home
    model_dir = home / REGISTRY_DIR / name
    created = [folder for folder in (model_dir, model_dir.parent, model_dir.parent.parent) if not folder.exists()]
    remove_dead_partials(model_dir)  # a log that was killed outright left its staging folder
    final = model_dir / version
    staging = partial_path(final)
    staging.mkdir(parents=True)
    try:
        record = _stage(warehouse, staging, model_or_path, name, version, framework, task, label_list,
                        input, description, trust, architecture, output, choice, templates)
        record = _with_runtime(record, runtime, provenance)
        record = _relocate(record, staging, final, home)
        if version in store.version_names(name):
            raise RegistryError(f"{name}@{version} was logged meanwhile by another process; log again for the next number")
        publish_folder(staging, final)
        try:
            store.insert_version(record, metric_values, description)
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        created = []
        return record
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # a refused log leaves no folder behind (unless another log is using it)
            try:
                folder.rmdir()
            except OSError:
                break


def _with_runtime(record: VersionRecord, runtime: str, provenance: Mapping[str, Any] | None) -> VersionRecord:
    """``record`` whose card carries ``runtime``, with ``provenance`` kept in its load options."""
    if runtime != "fp32" and record.task == ZERO_SHOT:
        raise ConfigError(f"runtime={runtime!r} is for image classifiers and embedders; a zero-shot model runs as logged")
    if runtime == "int8" and record.derived_onnx_path:
        raise ConfigError("runtime='int8' names a quantized ONNX file; quantize this model with registry.quantize(...) instead")
    card = replace(record.card, runtime=runtime)  # type: ignore[arg-type]
    options = {**record.options, **({"provenance": dict(provenance)} if provenance else {})}
    return replace(record, card_json=card.to_json(), load_options=json.dumps(options, sort_keys=True))


def _relocate(record: VersionRecord, staging: Path, final: Path, home: Path) -> VersionRecord:
    def moved(rel: str | None) -> str | None:
        if rel is None:
            return None
        return (final / (home / rel).relative_to(staging)).relative_to(home).as_posix()

    return replace(record, artifact_path=moved(record.artifact_path), derived_onnx_path=moved(record.derived_onnx_path))


def _stage(
    warehouse: Warehouse, staging: Path, model_or_path: Any, name: str, version: str, framework: str, task: str,
    labels: tuple[str, ...], input: InputArg, description: str, trust: bool, architecture: str | None,
    output: str | None, choice: SignatureChoice, templates: Sequence[str] | None = None,
) -> VersionRecord:
    """Write the artifact (and derived ONNX) into ``staging``; return the record pointing there.

    The model is opened once (:func:`take_in`) and that one object is probed and exported.
    """
    home, limit = warehouse.home, warehouse.settings.max_model_bytes
    intake = take_in(staging, model_or_path, framework, task, input, trust, architecture, output, limit, choice)
    if (intake.framework in ZERO_SHOT_FRAMEWORKS) != (task == ZERO_SHOT):
        _zero_shot_task(intake.framework, task, labels, templates)  # raises: the folder and the task disagree
    if task == ZERO_SHOT:
        return zero_shot_record(intake, home, name, version, templates, description, trust, limit)
    if intake.framework == "tensorflow" and intake.options.get("modality") == "image":
        if task == "classification" and not labels:
            raise ConfigError(NEEDS_LABELS)
    record, card = build_record(intake, home, name, version, task, labels, description, trust, limit)
    return derive_onnx(record, intake, card, staging, home)


def _zero_shot_task(framework: str, task: str, labels: tuple[str, ...], templates: Sequence[str] | None) -> str:
    """The task a log has: a dual encoder folder is 'zero-shot' (labels come per query), and 'zero-shot' needs one."""
    if framework in ZERO_SHOT_FRAMEWORKS:
        if labels:
            raise ConfigError(
                "a zero-shot dual encoder takes its labels per query (classify_labels(model, image, [...])); "
                "log it without labels, with task='zero-shot'"
            )
        if task not in (ZERO_SHOT, "classification"):
            raise ConfigError(f"a dual encoder folder is logged with task='zero-shot', not task={task!r}")
        return ZERO_SHOT
    if task == ZERO_SHOT and framework != "auto":
        raise ConfigError(
            f"task='zero-shot' needs a dual encoder (a Hugging Face CLIP folder, or a folder with zero_shot.json "
            f"naming an image and a text encoder ONNX), not a {framework} model"
        )
    if templates is not None and task != ZERO_SHOT:
        raise ConfigError("templates= are prompt templates of a zero-shot model; leave them out for this model")
    return task


__all__ = ["choose_version", "log_model", "next_version"]
