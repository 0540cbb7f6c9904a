"""What a caller gives ``log_model``: tell its framework, check it, copy it into the staging folder
and open it once.

The framework's own model object opened here (a torch module, a built Keras model) is handed on
to the probe and the ONNX export, so a logged model is read and built once, not once per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sightql.errors import ConfigError, UnsafeModelError
from sightql.images.spec import InputSpec
from sightql.models.keras.introspect import describe_model
from sightql.models.keras.load import load_model as load_keras_model
from sightql.models.onnx.files import static_onnx_input
from sightql.models.tensorflow.archive import archive_kind
from sightql.models.tensorflow.files import describe_archive_without_model, holds_saved_model
from sightql.models.zero_shot.layouts import FRAMEWORKS as ZERO_SHOT_FRAMEWORKS, layout_input, layout_of
from sightql.models.torch.files import (
    PICKLE_SUFFIXES, STATE_DICT_SUFFIXES, detect_format, load_module, save_module, unsafe_message,
)
from sightql.registry.artifacts import artifact_name, check_size, copy_artifact
from sightql.registry.inputs import InputArg, build_input_spec
from sightql.registry.saved_models import (
    SignatureChoice, open_saved_model, place_saved_model, saved_model_input,
)


@dataclass(frozen=True)
class Intake:
    """The artifact written into the staging folder, and what was learnt opening it."""

    framework: str
    artifact: Path
    spec: InputSpec
    options: dict[str, Any]
    model: Any = None  # the torch module or Keras model opened once (None: the probe loads the artifact)
    output: str | None = None  # the output kind asked for, else the one the file says (a Keras softmax)


def detect_framework(path: Path, trust: bool) -> str:
    """Which adapter reads this file or folder, from its name (and, for folders, modules.json)."""
    if path.is_dir():
        if (path / "modules.json").is_file():
            return "sentence-transformers"
        if holds_saved_model(path):
            return "tensorflow"
        layout = layout_of(path)
        if layout is not None:
            return layout
        raise ConfigError(
            f"{path} is a folder without modules.json, saved_model.pb, a CLIP config.json or zero_shot.json; give a "
            "model file, a TensorFlow SavedModel folder, a sentence-transformers folder or a zero-shot dual encoder folder"
        )
    if archive_kind(path) is not None:
        if holds_saved_model(path):  # reads the archive's index: a corrupt archive is said here
            return "tensorflow"
        raise describe_archive_without_model(path)
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
        "a TensorFlow SavedModel folder (or .zip/.tar.gz), a sentence-transformers folder, or pass framework= "
        "(CLI --framework)"
    )


def framework_of(model_or_path: Any, framework: str, trust: bool) -> str:
    """The framework as far as it can be told before anything is copied ('auto' when not yet)."""
    if framework != "auto" or not isinstance(model_or_path, (str, Path)):
        return framework
    path = Path(model_or_path).expanduser()
    return detect_framework(path, trust) if path.exists() else framework


def is_torch_module(obj: Any) -> bool:
    if isinstance(obj, (str, Path)):
        return False
    import torch

    return isinstance(obj, torch.nn.Module)


def take_in(
    staging: Path, model_or_path: Any, framework: str, task: str, input: InputArg, trust: bool,
    architecture: str | None, output: str | None, limit: int, choice: SignatureChoice = SignatureChoice(),
) -> Intake:
    """Write the artifact into ``staging`` (checked, within ``limit`` bytes) and open it once."""
    if is_torch_module(model_or_path):
        if framework not in ("auto", "torch"):
            raise ConfigError(f"an in-memory torch module cannot be logged as framework={framework!r}; leave framework='auto'")
        spec = build_input_spec(input)
        file_name, fmt = save_module(model_or_path, staging, architecture, spec.shape(1))
        artifact = staging / file_name
        check_size(artifact, limit)
        return _torch_intake(artifact, spec, fmt, None, trust, architecture, output)
    if not isinstance(model_or_path, (str, Path)):
        raise ConfigError(f"cannot log a {type(model_or_path).__name__}; pass a file path or a torch.nn.Module")
    source = Path(model_or_path).expanduser()
    if not source.exists():
        raise ConfigError(f"{source} does not exist; give the path of a model file or folder")
    if framework == "auto":
        framework = detect_framework(source, trust)
    if choice.given() and framework != "tensorflow":
        raise ConfigError(
            f"{'=, '.join(choice.given())}= choose what to call in a TensorFlow SavedModel, but {source} is a "
            f"{framework} model; leave them out"
        )
    if framework == "tensorflow":
        return _saved_model_intake(staging, source, input, trust, output, limit, choice)
    check_size(source, limit)
    if framework in ZERO_SHOT_FRAMEWORKS:
        return _dual_encoder_intake(staging, source, framework, input)
    artifact = staging / artifact_name(source)
    model = None
    from_file: dict[str, Any] | None = None
    if framework == "keras":
        model = load_keras_model(source, trust, "cpu")  # the safety check runs first, naming the user's file
        info = describe_model(model)
        from_file = info.card_input()
        if output is None and task == "classification":
            output = info.output
    copy_artifact(source, artifact)
    if framework == "onnx":
        from_file = static_onnx_input(artifact)
    spec = build_input_spec(input, from_file)
    if framework == "torch":
        fmt, state = detect_format(artifact, trust)
        return _torch_intake(artifact, spec, fmt, state, trust, architecture, output)
    return Intake(framework, artifact, spec, {}, model, output)


def _dual_encoder_intake(staging: Path, source: Path, framework: str, input: InputArg) -> Intake:
    """A zero-shot folder copied whole; its preprocessing read from its own files (then ``input=`` overrides)."""
    if layout_of(source) != framework:
        raise ConfigError(
            f"{source} is not a {framework} dual encoder folder; a Hugging Face CLIP folder has config.json and "
            "preprocessor_config.json, an ONNX pair has zero_shot.json"
        )
    artifact = staging / artifact_name(source)
    copy_artifact(source, artifact)
    return Intake(framework, artifact, build_input_spec(input, layout_input(artifact, framework)), {})


def _saved_model_intake(
    staging: Path, source: Path, input: InputArg, trust: bool, output: str | None, limit: int, choice: SignatureChoice,
) -> Intake:
    artifact = place_saved_model(staging, source, limit)
    model = open_saved_model(artifact, source, choice, trust)
    spec = saved_model_input(model.info, input, source)
    return Intake("tensorflow", artifact, spec, model.info.options(), model, output)


def _torch_intake(
    artifact: Path, spec: InputSpec, fmt: Any, state: dict[str, Any] | None, trust: bool, architecture: str | None,
    output: str | None,
) -> Intake:
    options: dict[str, Any] = {"format": fmt}
    if fmt == "state_dict":
        options["architecture"] = architecture
    module = load_module(artifact, fmt, architecture, trusted=trust, state=state)
    return Intake("torch", artifact, spec, options, module, output)
