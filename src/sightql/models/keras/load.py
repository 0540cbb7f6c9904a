"""Build a Keras model from a checked file, on a device, for inference (compile=False)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sightql.errors import ConfigError
from sightql.models.keras.backend import import_keras
from sightql.models.keras.files import (
    H5_SUFFIXES,
    check_safe,
    keras_config,
    keras_format,
    needs_input_layer,
    unknown_layer_classes,
    with_input_layer,
)


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


def load_model(path: Path, trust: bool, device: str) -> Any:
    """Check the config, then build the model with Keras on ``device`` (compile=False: inference only)."""
    path = Path(path)
    fmt = keras_format(path)
    config = keras_config(path)
    check_safe(config, path, trust)
    keras = import_keras()
    unknown = unknown_layer_classes(config, keras)
    if unknown:
        raise ConfigError(
            f"{path.name} uses layer classes that are not part of Keras ({', '.join(unknown)}); "
            "SightQL loads models built from Keras's own layers, so rebuild it with those or export it to ONNX"
        )
    wanted_suffix = ".keras" if fmt == "keras" else ".h5"
    if (fmt == "keras" and path.suffix != ".keras") or (fmt == "h5" and path.suffix.lower() not in H5_SUFFIXES):
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
