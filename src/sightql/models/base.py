"""The batch-shaped protocol every model adapter answers to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Union

import numpy as np

from sightql.models.card import ModelCard


class Predictor(Protocol):
    """A loaded model: a batch of preprocessed inputs in, one output row per input out.

    For classification the output rows are probabilities over ``card.labels``;
    for embeddings they are the feature vectors.
    """

    card: ModelCard
    device: str
    # Which exact model answered, e.g. 'imagenet@builtin-579344248a93' or 'xray@v3'.
    # Stored next to predictions so a changed model is noticed.
    model_version: str

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


class TextModel(Protocol):
    """A loaded text model (``card.modality == 'text'``): texts in, one unit vector per text out."""

    card: ModelCard
    device: str
    model_version: str

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


# What a model reference loads to: an image model or a text model (tell them apart by card.modality).
LoadedModel = Union[Predictor, TextModel]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def finish_output(raw: np.ndarray, card: ModelCard) -> np.ndarray:
    """Turn a model's raw output into what the card promises (probabilities or vectors)."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim > 2:
        raw = raw.reshape(raw.shape[0], -1)
    if card.output == "logits":
        return softmax(raw)
    return raw
