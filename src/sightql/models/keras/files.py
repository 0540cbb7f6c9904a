"""Read and check a Keras file without building it: format, config, the Lambda safety scan, legacy patches.

Loading a Keras file deserialises Python objects, so the file's config is read and
checked *before* Keras sees it: a ``Lambda`` layer carries marshalled Python bytecode
that runs when the model is built, and is refused unless the caller trusts the author.
Keras 2 ``.h5`` Sequential models saved without an ``InputLayer`` no longer build in
Keras 3; their config is patched in memory (see :func:`with_input_layer`).
"""

from __future__ import annotations

import copy
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from sightql.errors import ConfigError, UnsafeModelError
from sightql.models.keras.backend import import_h5py

KerasFormat = Literal["keras", "h5"]

# Class names whose config carries Python bytecode: a Lambda layer, and any Python
# lambda Keras 3 serialised in its place (an activation, a loss, ...).
_CODE_CLASS_NAMES = frozenset({"Lambda", "__lambda__"})
# Model containers are not in ``keras.layers`` but are always known to Keras.
_MODEL_CLASS_NAMES = frozenset({"Sequential", "Functional", "Model", "InputLayer"})
H5_SUFFIXES = (".h5", ".hdf5")


def keras_format(path: Path) -> KerasFormat:
    """Tell a Keras 3 zip archive from a legacy HDF5 file by content, not by file name."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} is not a file; pass the path of a .keras or .h5 Keras model")
    if zipfile.is_zipfile(path):
        return "keras"
    if import_h5py().is_hdf5(str(path)):
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
        with import_h5py().File(path, "r") as handle:
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
