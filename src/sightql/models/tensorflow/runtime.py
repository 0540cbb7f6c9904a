"""A SavedModel run through TensorFlow: images in (``predict``) or texts in (``embed_texts``).

Used where the tf2onnx conversion failed or disagreed with TensorFlow, for a text model (a
signature taking strings), and as the reference the conversion is checked against.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sightql.models.base import finish_output
from sightql.models.card import ModelCard
from sightql.models.tensorflow.signature import SavedModel, load_saved_model
from sightql.models.text_embedder import check_texts

TEXT_BATCH = 256


class _SavedModelRunner:
    """What both kinds hold: the opened SavedModel, its card, and the Predictor protocol's attributes."""

    def __init__(self, model: SavedModel, card: ModelCard, device: str = "cpu"):
        self._model = model
        self.card = card
        self.device = device
        self.model_version = card.name


class TensorFlowPredictor(_SavedModelRunner):
    """An image SavedModel answering the Predictor protocol (preprocessed batch in, card's output out)."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return finish_output(self._model.run(batch), self.card)


class TensorFlowTextEmbedder(_SavedModelRunner):
    """A SavedModel whose signature takes strings: texts in, the signature's vectors out, as TensorFlow gives them."""

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        check_texts(texts)
        parts = [self._model.run(list(texts[i:i + TEXT_BATCH])) for i in range(0, len(texts), TEXT_BATCH)]
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = np.concatenate(parts).reshape(len(texts), -1)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def text_card(name: str, description: str = "") -> ModelCard:
    return ModelCard(name=name, task="embedding", framework="tensorflow", output="embedding",
                     description=description, modality="text")


def wrap(model: SavedModel, card: ModelCard, device: str = "cpu") -> TensorFlowPredictor | TensorFlowTextEmbedder:
    """The predictor for an opened SavedModel: a text embedder for a string signature, else an image predictor."""
    if model.info.modality == "text":
        return TensorFlowTextEmbedder(model, card, device)
    return TensorFlowPredictor(model, card, device)


def load_tensorflow_predictor(
    folder: Path, card: ModelCard, options: dict[str, Any], *, trust: bool = False, device: str = "cpu",
) -> TensorFlowPredictor | TensorFlowTextEmbedder:
    """Load a logged SavedModel folder and call the signature, input and output recorded when it was logged."""
    model = load_saved_model(
        folder, folder.name, signature=options.get("signature"), input_name=options.get("input_name"),
        output_name=options.get("output_name"), trust=trust,
    )
    return wrap(model, card, device)
