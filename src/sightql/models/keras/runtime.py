"""A loaded Keras model answering the Predictor protocol, checked against its card."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from sightql.errors import ConfigError
from sightql.models.base import finish_output
from sightql.models.card import ModelCard
from sightql.models.keras.backend import import_keras
from sightql.models.keras.introspect import KerasInfo, describe_model
from sightql.models.keras.load import load_model


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
        self._keras = import_keras()
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
    model = load_model(Path(path), trust, device)
    return KerasPredictor(model, card, device)
