"""Import Keras on the torch backend (no TensorFlow), and h5py, or say what to install."""

from __future__ import annotations

import os
import sys
from typing import Any

from sightql.errors import ConfigError, MissingDependencyError


def import_keras() -> Any:
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


def import_h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise MissingDependencyError("h5py", "keras") from exc
    return h5py
