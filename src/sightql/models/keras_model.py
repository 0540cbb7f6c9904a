"""Keras 3 adapter: ``.keras`` and legacy ``.h5`` models, run on the torch backend (no TensorFlow).

Loading a Keras file deserialises Python objects, so the file's config is read and
checked *before* Keras sees it: a ``Lambda`` layer carries marshalled Python bytecode
that runs when the model is built, and is refused unless the caller trusts the author.
Keras 2 ``.h5`` Sequential models saved without an ``InputLayer`` no longer build in
Keras 3; their config is patched in memory and the weights are read from the file as is.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sightql.errors import ConfigError, MissingDependencyError, UnsafeModelError
from sightql.images.spec import InputSpec
from sightql.models import quiet
from sightql.models.base import finish_output
from sightql.models.card import ModelCard

KerasFormat = Literal["keras", "h5"]

# Class names whose config carries Python bytecode: a Lambda layer, and any Python
# lambda Keras 3 serialised in its place (an activation, a loss, ...).
_CODE_CLASS_NAMES = frozenset({"Lambda", "__lambda__"})
# Model containers are not in ``keras.layers`` but are always known to Keras.
_MODEL_CLASS_NAMES = frozenset({"Sequential", "Functional", "Model", "InputLayer"})
_H5_SUFFIXES = (".h5", ".hdf5")


def _keras() -> Any:
    """Import Keras on the torch backend, or say why it cannot be.

    The backend is fixed when Keras is first imported, so ``KERAS_BACKEND`` is forced to
    torch before that; once Keras is loaded with another backend only a new process helps.
    """
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "torch"
    try:
        import keras
    except ImportError as exc:
        raise MissingDependencyError("keras", "keras") from exc
    backend = keras.backend.backend()
    if backend != "torch":
        raise ConfigError(
            f"Keras is already loaded with the {backend!r} backend but SightQL runs Keras models on torch; "
            "set KERAS_BACKEND=torch before starting Python"
        )
    return keras


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise MissingDependencyError("h5py", "keras") from exc
    return h5py


def keras_format(path: Path) -> KerasFormat:
    """Tell a Keras 3 zip archive from a legacy HDF5 file by content, not by file name."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} is not a file; pass the path of a .keras or .h5 Keras model")
    if zipfile.is_zipfile(path):
        return "keras"
    if _h5py().is_hdf5(str(path)):
        return "h5"
    raise ConfigError(
        f"{path.name} is neither a .keras archive nor an HDF5 file; save the model with model.save('model.keras')"
    )


def keras_config(path: Path) -> dict[str, Any]:
    """The model's architecture as JSON, read without building (and so without running) anything."""
    path = Path(path)
    fmt = keras_format(path)
    if fmt == "keras":
        with zipfile.ZipFile(path) as archive:
            try:
                raw: str | bytes = archive.read("config.json")
            except KeyError:
                raise ConfigError(
                    f"{path.name} is a zip archive without config.json, so not a Keras model; "
                    "save the model with model.save('model.keras')"
                ) from None
    else:
        with _h5py().File(path, "r") as handle:
            found = handle.attrs.get("model_config")
            if found is None:
                raise ConfigError(
                    f"{path.name} is an HDF5 file without a model_config (weights only?); "
                    "save the whole model with model.save('model.keras')"
                )
            raw = found.decode("utf-8") if isinstance(found, bytes) else str(found)
    try:
        config = json.loads(raw)
    except ValueError:
        raise ConfigError(f"the model config in {path.name} is not valid JSON; save the model again with model.save") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise ConfigError(f"the config in {path.name} does not describe a Keras model; save the model again with model.save")
    return config


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict in a config tree, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _layer_configs(node: Any) -> Iterator[dict[str, Any]]:
    """Layer (and nested model) entries: the root, items of ``layers`` lists, wrapped ``layer``s."""
    if not isinstance(node, dict):
        return
    if "class_name" in node:
        yield node
    inner = node.get("config")
    if isinstance(inner, list):  # Keras <= 2.2 Sequential: config is the list of layers
        for item in inner:
            yield from _layer_configs(item)
    elif isinstance(inner, dict):
        for item in inner.get("layers") or []:
            yield from _layer_configs(item)
        if isinstance(inner.get("layer"), dict):  # TimeDistributed, Bidirectional, ...
            yield from _layer_configs(inner["layer"])


def code_layers(config: dict[str, Any]) -> list[str]:
    """Names of the parts of a config that hold Python bytecode (Lambda layers, serialised lambdas)."""
    found = []
    for node in _walk(config):
        if node.get("class_name") in _CODE_CLASS_NAMES:
            inner = node.get("config")
            name = inner.get("name") if isinstance(inner, dict) else None
            found.append(str(name or node["class_name"]))
    return found


def check_safe(config: dict[str, Any], path: Path, trust: bool) -> None:
    """Refuse a model whose config carries Python code unless its author is trusted."""
    if trust:
        return
    found = code_layers(config)
    if found:
        raise UnsafeModelError(
            f"{Path(path).name} contains a Keras Lambda layer ({', '.join(found)}), which runs arbitrary Python code "
            "when loaded; pass trust=True (sightql models log --trust) only if you trust its author"
        )


def unknown_layer_classes(config: dict[str, Any], keras: Any) -> list[str]:
    """Layer classes this process cannot build: custom classes whose code is not imported.

    The file holds only their names, so loading would fail deep inside Keras; saying so up front
    gives the user a sentence instead of a stack trace.
    """
    unknown = []
    for node in _layer_configs(config):
        class_name = str(node.get("class_name"))
        registered = node.get("registered_name")
        if isinstance(registered, str) and ">" in registered:
            if keras.saving.get_registered_object(registered) is None:
                unknown.append(registered)
        elif class_name not in _MODEL_CLASS_NAMES and class_name not in _CODE_CLASS_NAMES:
            if not hasattr(keras.layers, class_name) and keras.saving.get_registered_object(class_name) is None:
                unknown.append(class_name)
    return sorted(set(unknown))


def _sequential_layers(config: dict[str, Any]) -> list[dict[str, Any]] | None:
    inner = config.get("config")
    if isinstance(inner, list):
        return inner
    if isinstance(inner, dict) and isinstance(inner.get("layers"), list):
        return inner["layers"]
    return None


def needs_input_layer(config: dict[str, Any]) -> bool:
    """A Keras 2 Sequential that names its input shape on the first layer instead of an InputLayer.

    Keras 3 turns that ``batch_input_shape`` into an input of the wrong rank and fails to build.
    """
    if config.get("class_name") != "Sequential":
        return False
    layers = _sequential_layers(config)
    if not layers or any(layer.get("class_name") == "InputLayer" for layer in layers):
        return False
    first = layers[0].get("config") or {}
    return "batch_input_shape" in first or "batch_shape" in first


def with_input_layer(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a legacy Sequential config with the first layer's input shape moved into an InputLayer."""
    patched = copy.deepcopy(config)
    layers = _sequential_layers(patched)
    if layers is None:
        raise ConfigError("the legacy Keras config has no layer list; save the model again with model.save('model.keras')")
    if isinstance(patched["config"], list):
        patched["config"] = {"name": "sequential", "layers": layers}
    first = layers[0]["config"]
    shape = first.pop("batch_input_shape", None) or first.pop("batch_shape")
    dtype = first.get("dtype") if isinstance(first.get("dtype"), str) else "float32"
    input_layer = {
        "class_name": "InputLayer",
        "config": {"batch_shape": list(shape), "dtype": dtype, "name": f"{first.get('name', 'layer')}_input"},
    }
    layers.insert(0, input_layer)
    return patched


@contextlib.contextmanager
def _safe_mode(enabled: bool) -> Iterator[None]:
    """Keras's own Lambda guard for the legacy rebuild, which has no ``safe_mode`` argument.

    ``SafeModeScope`` is not public API; without it a trusted legacy Lambda model fails to build
    (Keras's guard stays on), which is the safe direction.
    """
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:
        yield
        return
    with SafeModeScope(enabled):
        yield


def _load_model(path: Path, trust: bool, device: str) -> Any:
    """Check the config, then build the model with Keras on ``device`` (compile=False: inference only)."""
    path = Path(path)
    fmt = keras_format(path)
    config = keras_config(path)
    check_safe(config, path, trust)
    keras = _keras()
    unknown = unknown_layer_classes(config, keras)
    if unknown:
        raise ConfigError(
            f"{path.name} uses layer classes that are not part of Keras ({', '.join(unknown)}); "
            "SightQL loads models built from Keras's own layers, so rebuild it with those or export it to ONNX"
        )
    wanted_suffix = ".keras" if fmt == "keras" else ".h5"
    if (fmt == "keras" and path.suffix != ".keras") or (fmt == "h5" and path.suffix.lower() not in _H5_SUFFIXES):
        raise ConfigError(f"{path.name} is a {fmt} Keras file but Keras reads it only under a {wanted_suffix} name; rename it")
    try:
        with keras.device(device):
            if fmt == "h5" and needs_input_layer(config):
                with _safe_mode(not trust):
                    model = keras.Sequential.from_config(with_input_layer(config)["config"])
                model.load_weights(str(path))
                return model
            return keras.models.load_model(str(path), compile=False, safe_mode=not trust)
    except (ValueError, TypeError, KeyError, OSError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"Keras {keras.__version__} could not load {path.name} ({first_line}); "
            "save the model again with Keras 3 as model.save('model.keras')"
        ) from exc


@dataclass(frozen=True)
class KerasInfo:
    """What a Keras model's own shapes say about how to feed it and read it."""

    height: int | None
    width: int | None
    channels: int | None
    outputs: int
    softmax: bool
    layout: Literal["NCHW", "NHWC"] = "NHWC"

    @property
    def output(self) -> Literal["probabilities", "logits"]:
        """A softmax last layer already gives probabilities; otherwise SightQL applies softmax."""
        return "probabilities" if self.softmax else "logits"

    def input_spec(self, **overrides: Any) -> InputSpec:
        """An InputSpec with the model's size, channels and layout; mean/std/scale etc. from ``overrides``."""
        if self.height is None or self.width is None or self.channels is None:
            raise ConfigError(
                "the Keras model accepts inputs of any size; give height, width and channels explicitly in its card"
            )
        values: dict[str, Any] = {
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
            "layout": self.layout,
        }
        if self.channels == 1:
            values.update(mean=(0.0,), std=(1.0,))
        values.update(overrides)
        return InputSpec(**values)


def _output_layer(model: Any) -> Any:
    history = getattr(model.outputs[0], "_keras_history", None) if getattr(model, "outputs", None) else None
    return history[0] if history else model.layers[-1]


def _is_softmax(layer: Any, keras: Any) -> bool:
    if isinstance(layer, keras.layers.Softmax):
        return True
    return getattr(getattr(layer, "activation", None), "__name__", "") == "softmax"


def describe_model(model: Any) -> KerasInfo:
    """Read input size, output width and last activation from a built Keras model."""
    keras = _keras()
    try:
        in_shape = tuple(model.inputs[0].shape)
        out_shape = tuple(model.outputs[0].shape)
    except (AttributeError, IndexError, TypeError):
        raise ConfigError("the Keras model has no defined input or output; save it after calling it once or with an Input layer") from None
    if len(in_shape) != 4:
        raise ConfigError(f"the Keras model takes inputs of shape {in_shape}, not images (batch, height, width, channels)")
    _, a, b, c = in_shape
    channels_first = c not in (1, 3, None) and a in (1, 3)
    height, width, channels = (b, c, a) if channels_first else (a, b, c)
    outputs = int(np.prod([d for d in out_shape[1:] if d is not None])) if len(out_shape) > 1 else 1
    return KerasInfo(
        height=height,
        width=width,
        channels=channels,
        outputs=outputs,
        softmax=_is_softmax(_output_layer(model), keras),
        layout="NCHW" if channels_first else "NHWC",
    )


def inspect_keras(path: Path, *, trust: bool = False) -> KerasInfo:
    """Build the model (after the safety check) and report its shapes, to fill a card's defaults."""
    return describe_model(_load_model(Path(path), trust, "cpu"))


def _check_card(info: KerasInfo, card: ModelCard) -> None:
    """A card that disagrees with the model gives wrong answers quietly; say so at load time instead."""
    spec = card.input
    for field_name in ("height", "width", "channels"):
        model_value = getattr(info, field_name)
        if model_value is not None and model_value != getattr(spec, field_name):
            raise ConfigError(
                f"card {card.name!r} says input {field_name} {getattr(spec, field_name)} but the Keras model expects "
                f"{model_value}; fix the card"
            )
    if spec.layout != info.layout:
        raise ConfigError(f"card {card.name!r} says layout {spec.layout} but the Keras model expects {info.layout}; fix the card")
    if card.task == "classification" and card.labels and len(card.labels) != info.outputs:
        raise ConfigError(
            f"card {card.name!r} has {len(card.labels)} labels but the Keras model has {info.outputs} outputs; fix the labels"
        )


class KerasPredictor:
    """A loaded Keras model answering the Predictor protocol.

    The model is called directly (see :func:`run_model`); on the torch backend that was as fast
    as ``predict_on_batch``. One lock serialises calls because Keras's device scope is process
    state.
    """

    def __init__(self, model: Any, card: ModelCard, device: str = "cpu"):
        self._keras = _keras()
        _check_card(describe_model(model), card)
        self._model = model
        self._lock = threading.Lock()
        self.card = card
        self.device = device
        self.model_version = card.name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with self._lock, self._keras.device(self.device):
            raw = run_model(self._model, batch)
        return finish_output(raw, self.card)


def run_model(model: Any, batch: np.ndarray) -> np.ndarray:
    """The model's (first) output on ``batch``, without gradients, as a float32 numpy array.

    What ``predict_on_batch`` does, minus its conversion: Keras turns the torch tensor into numpy
    with ``np.array(tensor)``, and since NumPy 2 that warns on every call (torch's ``__array__``
    takes no ``copy`` argument); ``Tensor.numpy()`` gives the same values without the warning.
    """
    import torch

    with torch.no_grad():
        raw = model(np.ascontiguousarray(batch, dtype=np.float32), training=False)
    if isinstance(raw, dict):
        raw = next(iter(raw.values()))
    if isinstance(raw, (list, tuple)):
        raw = raw[0]
    return raw.detach().to("cpu", torch.float32).numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw, np.float32)


def load_keras_predictor(path: Path, card: ModelCard, *, trust: bool = False, device: str = "cpu") -> KerasPredictor:
    """Load a ``.keras`` or ``.h5`` file for inference; Lambda layers need ``trust=True``."""
    model = _load_model(Path(path), trust, device)
    return KerasPredictor(model, card, device)


def export_keras_onnx(path: Path, card: ModelCard, destination: Path, *, trust: bool = False) -> float:
    """Export a Keras model to ONNX and return the largest difference from Keras on a random batch.

    The ONNX file then runs on ONNX Runtime like every other image model, without Keras.
    """
    import onnxruntime as ort

    model = _load_model(Path(path), trust, "cpu")
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    sample = np.random.default_rng(0).random(card.input.shape(4), dtype=np.float32)
    # Keras exports only a model that has been called (its input signature comes from that call).
    expected = run_model(model, sample)
    with quiet.legacy_onnx_exporter():  # a dynamic batch: Keras uses torch's TorchScript exporter
        model.export(str(destination), format="onnx", verbose=False)
    session = ort.InferenceSession(str(destination), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: sample})[:1]
    return float(np.abs(np.asarray(got) - expected).max())


__all__ = [
    "KerasInfo",
    "KerasPredictor",
    "check_safe",
    "code_layers",
    "describe_model",
    "export_keras_onnx",
    "inspect_keras",
    "keras_config",
    "keras_format",
    "load_keras_predictor",
    "needs_input_layer",
    "with_input_layer",
]
