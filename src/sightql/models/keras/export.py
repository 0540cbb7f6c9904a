"""Export a Keras model to ONNX once, so it runs on ONNX Runtime like every other image model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sightql.models import quiet
from sightql.models.card import ModelCard
from sightql.models.keras.load import load_model
from sightql.models.keras.runtime import run_model


def export_keras_onnx(path: Path, card: ModelCard, destination: Path, *, trust: bool = False) -> float:
    """Export a Keras model file to ONNX and return the largest difference from Keras on a random batch.

    The ONNX file then runs on ONNX Runtime like every other image model, without Keras.
    """
    return export_keras_model_onnx(load_model(Path(path), trust, "cpu"), card, destination)


def export_keras_model_onnx(model: Any, card: ModelCard, destination: Path) -> float:
    """:func:`export_keras_onnx` for a Keras model already built (on the CPU)."""
    import onnxruntime as ort

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
