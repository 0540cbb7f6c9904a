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
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from sightql.errors import ConfigError, RegistryError, UnsafeModelError
from sightql.models.card import ModelCard
from sightql.models.loader import is_builtin
from sightql.models.onnx.files import static_onnx_input
from sightql.models.torch.files import PICKLE_SUFFIXES, STATE_DICT_SUFFIXES, unsafe_message
from sightql.partial_files import is_partial_name, partial_path, remove_dead_partials
from sightql.registry.artifacts import (
    DERIVED_ONNX, REGISTRY_DIR, artifact_name, check_size, copy_artifact, publish_folder, sha256_of,
)
from sightql.registry.inputs import InputArg, LabelsArg, build_input_spec, keras_input, read_labels
from sightql.registry.loading import FRAMEWORKS, load_version
from sightql.registry.records import VERSION_COLUMNS, VersionRecord
from sightql.registry.refs import LATEST, check_model_name, check_tag, version_number

if TYPE_CHECKING:
    from sightql.registry.registry import Registry

TASKS = ("classification", "embedding")
OUTPUTS = ("logits", "probabilities", "embedding")


def detect_framework(path: Path, trust: bool) -> str:
    """Which adapter reads this file or folder, from its name (and, for folders, modules.json)."""
    if path.is_dir():
        if (path / "modules.json").is_file():
            return "sentence-transformers"
        raise ConfigError(f"{path} is a folder without modules.json; give a model file or a sentence-transformers folder")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in STATE_DICT_SUFFIXES:
        return "torch"
    if suffix in (".h5", ".keras"):
        return "keras"
    if suffix in PICKLE_SUFFIXES:
        if not trust:
            raise UnsafeModelError(unsafe_message(path))
        return "torch"
    raise ConfigError(
        f"cannot tell the framework of {path.name}; use .onnx, .pt/.pth/.bin/.safetensors, .h5/.keras, "
        "a sentence-transformers folder, or pass framework="
    )


def _framework_of(model_or_path: Any, framework: str, trust: bool) -> str:
    """The framework as far as it can be told before anything is copied ('auto' when not yet)."""
    if framework != "auto" or not isinstance(model_or_path, (str, Path)):
        return framework
    path = Path(model_or_path).expanduser()
    return detect_framework(path, trust) if path.exists() else framework


def _is_torch_module(obj: Any) -> bool:
    if isinstance(obj, (str, Path)):
        return False
    import torch

    return isinstance(obj, torch.nn.Module)


def _next_version(existing: list[str]) -> str:
    numbers = [n for n in map(version_number, existing) if n is not None]
    return f"v{max(numbers, default=0) + 1}"


def _choose_version(registry: "Registry", name: str, version: str | None) -> str:
    existing = registry.store.version_names(name)
    if version is None:
        return _next_version(existing)
    check_tag(version, "version")
    if version == LATEST:
        raise ConfigError("'latest' is a reference, not a version name; leave version=None to number it automatically")
    if is_partial_name(version):
        raise ConfigError(f"version {version!r} has the form of an unfinished copy's name; pick another version name")
    if version in existing:
        raise RegistryError(f"{name}@{version} already exists; leave version=None for the next number or pick another name")
    if version in registry.store.alias_names(name):
        raise RegistryError(f"{version!r} is an alias of {name}; pick a version name that is not an alias")
    return version


def _output_kind(raw: np.ndarray, task: str, requested: str | None) -> str:
    if requested is not None:
        if requested not in OUTPUTS:
            raise ConfigError(f"output={requested!r} is not valid; use one of {', '.join(OUTPUTS)}")
        return requested
    if task == "embedding":
        return "embedding"
    looks_like_probabilities = (
        np.all(raw >= 0) and np.all(raw <= 1) and np.allclose(raw.sum(axis=1), 1.0, atol=1e-3)
    )
    return "probabilities" if looks_like_probabilities else "logits"


def log_model(
    registry: "Registry",
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
) -> VersionRecord:
    check_model_name(name)
    if is_builtin(name):
        raise RegistryError(f"{name!r} is a built-in model; log yours under another name")
    if task not in TASKS:
        raise ConfigError(f"task={task!r} is not valid; use 'classification' or 'embedding'")
    if framework != "auto" and framework not in FRAMEWORKS:
        raise ConfigError(f"framework={framework!r} is not known; use 'auto' or one of {', '.join(FRAMEWORKS)}")
    label_list = read_labels(labels)
    text_model = _framework_of(model_or_path, framework, trust) == "sentence-transformers"
    if task == "classification" and not label_list and not text_model:
        raise ConfigError("a classification model needs labels= (a list or a text file, one per line), or pass task='embedding'")
    metric_values = {str(k): float(v) for k, v in (metrics or {}).items()}
    version = _choose_version(registry, name, version)

    home = registry.home
    model_dir = home / REGISTRY_DIR / name
    created = [folder for folder in (model_dir, model_dir.parent, model_dir.parent.parent) if not folder.exists()]
    remove_dead_partials(model_dir)  # a log that was killed outright left its staging folder
    final = model_dir / version
    staging = partial_path(final)
    staging.mkdir(parents=True)
    try:
        record = _stage(registry, staging, model_or_path, name, version, framework, task, label_list,
                        input, description, trust, architecture, output)
        record = _relocate(record, staging, final, home)
        if version in registry.store.version_names(name):
            raise RegistryError(f"{name}@{version} was logged meanwhile by another process; log again for the next number")
        publish_folder(staging, final)
        try:
            registry.store.insert_version(record, metric_values, description)
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


def _relocate(record: VersionRecord, staging: Path, final: Path, home: Path) -> VersionRecord:
    def moved(rel: str | None) -> str | None:
        if rel is None:
            return None
        return (final / (home / rel).relative_to(staging)).relative_to(home).as_posix()

    return replace(record, artifact_path=moved(record.artifact_path), derived_onnx_path=moved(record.derived_onnx_path))


def _stage(
    registry: "Registry", staging: Path, model_or_path: Any, name: str, version: str, framework: str, task: str,
    labels: tuple[str, ...], input: InputArg, description: str, trust: bool, architecture: str | None,
    output: str | None,
) -> VersionRecord:
    """Write the artifact (and derived ONNX) into ``staging``; return the record pointing there."""
    home = registry.home
    limit = registry.settings.max_model_bytes
    options: dict[str, Any] = {}
    module = None
    if _is_torch_module(model_or_path):
        if framework not in ("auto", "torch"):
            raise ConfigError(f"an in-memory torch module cannot be logged as framework={framework!r}; leave framework='auto'")
        from sightql.models.torch.files import save_module

        framework = "torch"
        spec = build_input_spec(input)
        file_name, fmt = save_module(model_or_path, staging, architecture, spec.shape(1))
        artifact = staging / file_name
        check_size(artifact, limit)
    else:
        if not isinstance(model_or_path, (str, Path)):
            raise ConfigError(
                f"cannot log a {type(model_or_path).__name__}; pass a file path or a torch.nn.Module"
            )
        source = Path(model_or_path).expanduser()
        if not source.exists():
            raise ConfigError(f"{source} does not exist; give the path of a model file or folder")
        if framework == "auto":
            framework = detect_framework(source, trust)
        check_size(source, limit)
        artifact = staging / artifact_name(source)
        from_file: dict[str, Any] | None = None
        if framework == "keras":
            from sightql.models.keras.introspect import inspect_keras

            keras_info = inspect_keras(source, trust=trust)  # the safety check runs first, naming the user's file
            from_file = keras_input(keras_info)
            if output is None and task == "classification":
                output = keras_info.output
        copy_artifact(source, artifact)
        if framework == "onnx":
            from_file = static_onnx_input(artifact)
        spec = build_input_spec(input, from_file)
        fmt = None
    if framework == "torch":
        from sightql.models.torch.files import detect_format, load_module

        fmt = fmt or detect_format(artifact, trust)
        options = {"format": fmt}
        if fmt == "state_dict":
            options["architecture"] = architecture
        module = load_module(artifact, fmt, architecture, trusted=trust)

    card = ModelCard(name=name, task=task, framework=framework, labels=labels, input=spec,  # type: ignore[arg-type]
                     output="embedding", description=description)
    record = VersionRecord(
        name=name, version=version, framework=framework, task=task, card_json=card.to_json(),
        artifact_path=artifact.relative_to(home).as_posix(), sha256=sha256_of(artifact), size_bytes=0,
        derived_onnx_path=None, derived_onnx_sha256=None, trusted=bool(trust), description=description,
        load_options=json.dumps(options, sort_keys=True),
    )
    if module is not None:
        raw = _torch_raw(module, spec.shape(2))
    else:
        probe = load_version(record, home, "cpu")
        if probe.card.modality == "text":  # a text model: its card comes from its own config
            card = replace(probe.card, name=name, description=description)
            task = "embedding"
            raw = np.asarray(probe.embed_texts(["probe"]), dtype=np.float32)  # type: ignore[union-attr]
        else:
            raw = np.asarray(probe.predict(np.zeros(spec.shape(2), dtype=np.float32)), dtype=np.float32)  # type: ignore[union-attr]
    raw = raw.reshape(raw.shape[0], -1)
    if task == "classification" and raw.shape[1] != len(labels):
        raise ConfigError(
            f"the model gives {raw.shape[1]} outputs but {len(labels)} labels were given; pass exactly one label per output"
        )
    card = replace(card, task=task, output=_output_kind(raw, task, output))  # type: ignore[arg-type]
    record = replace(record, task=task, card_json=card.to_json(), size_bytes=check_size(artifact, limit))
    if module is not None:
        record = _derive_torch_onnx(record, module, card, staging, home)
    elif framework == "keras":
        record = _derive_keras_onnx(record, card, staging, home)
    return record


def _torch_raw(module: Any, shape: tuple[int, ...]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        out = module(torch.zeros(*shape))
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"the model returned a {type(out).__name__}, not a tensor; wrap it to return one tensor")
    return out.float().numpy()


def _derive_onnx(
    record: VersionRecord, card: ModelCard, staging: Path, home: Path, export: Callable[[Path], Any], framework: str,
) -> VersionRecord:
    """Export once, checked against the framework (<= 1e-4); CPU inference then runs ONNX Runtime.

    An export that fails (or disagrees) is said in a warning and the version runs with the framework itself.
    """
    derived = staging / DERIVED_ONNX
    try:
        export(derived)
    except Exception as exc:
        derived.unlink(missing_ok=True)
        warnings.warn(
            f"{record.ref} could not be exported to ONNX ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            f"it will run with {framework} on the CPU too",
            stacklevel=4,
        )
        return record
    record = replace(record, derived_onnx_path=derived.relative_to(home).as_posix(), derived_onnx_sha256=sha256_of(derived))
    check = load_version(record, home, "cpu")
    check.predict(np.zeros(card.input.shape(1), dtype=np.float32))  # type: ignore[union-attr]
    return record


def _derive_torch_onnx(record: VersionRecord, module: Any, card: ModelCard, staging: Path, home: Path) -> VersionRecord:
    from sightql.models.torch.export import export_onnx

    return _derive_onnx(record, card, staging, home, lambda derived: export_onnx(module, card, derived), "torch")


def _derive_keras_onnx(record: VersionRecord, card: ModelCard, staging: Path, home: Path) -> VersionRecord:
    from sightql.models.keras.export import export_keras_onnx
    from sightql.models.torch.export import EXPORT_TOLERANCE, ExportCheckError

    def export(derived: Path) -> None:
        diff = export_keras_onnx(record.artifact(home), card, derived, trust=record.trusted)
        if diff > EXPORT_TOLERANCE:
            raise ExportCheckError(f"the ONNX export differs from Keras by {diff:.2e} (limit {EXPORT_TOLERANCE:.0e})")

    return _derive_onnx(record, card, staging, home, export, "Keras")


__all__ = ["VERSION_COLUMNS", "detect_framework", "log_model"]
