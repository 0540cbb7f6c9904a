"""The loaded dual encoder every zero-shot layout answers to, and its label scores.

``embed_images(batch)`` and ``embed_texts(texts)`` give L2-normalised float32 rows in one space;
``predict`` is ``embed_images``, so ``embed(model, image)`` in SQL gives the image embedding through
the one batch engine. :meth:`DualEncoder.label_vectors` embeds each (template, label) text once per
loaded model and keeps it (in-process, bounded), averaging a label's templates as CLIP does;
:meth:`DualEncoder.label_scores` is the softmax over labels of ``logit_scale * cosine``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from sightql.errors import ConfigError
from sightql.models.base import softmax
from sightql.models.card import ModelCard
from sightql.models.text_embedder import check_texts

DEFAULT_TEMPLATES = ("a photo of a {}.",)
PLACEHOLDER = "{}"
LABEL_CACHE_SIZE = 4096  # label vectors kept per loaded model (one per label and template set)


def check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """Templates as a tuple, each holding the ``{}`` a label replaces; one sentence naming a bad one."""
    if isinstance(templates, str):
        raise ConfigError("templates takes a list of prompt templates, not one string; wrap it as [template]")
    chosen = tuple(templates)
    if not chosen:
        raise ConfigError("templates is empty; give at least one, e.g. ['a photo of a {}.']")
    for template in chosen:
        if not isinstance(template, str) or PLACEHOLDER not in template:
            raise ConfigError(f"prompt template {template!r} has no {{}} for the label; write e.g. 'a photo of a {{}}.'")
    return chosen


def check_labels(labels: Sequence[str] | None) -> tuple[str, ...]:
    """At least two distinct, non-empty labels; one sentence otherwise."""
    if isinstance(labels, str):
        raise ConfigError(f"labels must be a list such as ['scratch', 'dent', 'ok'], not the one string {labels!r}")
    chosen = tuple(labels or ())
    if len(chosen) < 2:
        raise ConfigError(
            f"classify_labels needs at least 2 labels to choose between, got {len(chosen)}; "
            "pass a list such as ['scratch', 'dent', 'ok']"
        )
    if any(not isinstance(label, str) or not label.strip() for label in chosen):
        raise ConfigError("classify_labels got an empty or NULL label; every label must be a non-empty text")
    doubled = sorted({label for label in chosen if chosen.count(label) > 1})
    if doubled:
        raise ConfigError(f"label {doubled[0]!r} is given twice; give each label once")
    return chosen


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    vectors = vectors.reshape(vectors.shape[0], -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class DualEncoder:
    """A loaded zero-shot model; subclasses give the raw tower outputs (``_image_features``, ``_text_features``)."""

    device = "cpu"

    def __init__(self, card: ModelCard, logit_scale: float, device: str = "cpu"):
        self.card = card
        self.device = device
        self.model_version = card.name
        # The card's (recorded at log time) wins over what the files say, so a version scores as it did when logged.
        self.logit_scale = float(card.logit_scale if card.logit_scale is not None else logit_scale)
        self._labels: OrderedDict[tuple[tuple[str, ...], str], np.ndarray] = OrderedDict()
        self._label_lock = threading.Lock()
        self._dim: int | None = None

    # ---- the two towers ---------------------------------------------------------------------
    def _image_features(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _text_features(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def embed_images(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed images (the card's input spec) -> (n, dim) unit vectors."""
        return normalise(self._image_features(np.ascontiguousarray(batch, dtype=np.float32)))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (n, dim) unit vectors in the images' space (text-to-image search uses these)."""
        check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise(self._text_features(list(texts)))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.embed_images(batch)

    @property
    def dim(self) -> int:
        """The embedding width (found by embedding one text, once)."""
        if self._dim is None:
            self._dim = int(normalise(self._text_features(["a"])).shape[1])
        return self._dim

    # ---- labels -------------------------------------------------------------------------------
    def label_vectors(self, labels: Sequence[str], templates: Sequence[str] | None = None) -> np.ndarray:
        """One unit vector per label: the mean of its templated texts' unit vectors, normalised again.

        Texts not seen before by this model (with these templates) are embedded in one call; the rest
        come from the in-process cache, so a query over many rows embeds its labels once."""
        chosen = check_templates(templates if templates is not None else (self.card.templates or DEFAULT_TEMPLATES))
        labels = check_labels(labels)
        with self._label_lock:
            missing = [label for label in dict.fromkeys(labels) if (chosen, label) not in self._labels]
            if missing:
                texts = [template.replace(PLACEHOLDER, label) for label in missing for template in chosen]
                vectors = self.embed_texts(texts).reshape(len(missing), len(chosen), -1)
                for label, per_template in zip(missing, normalise(vectors.mean(axis=1))):
                    self._labels[(chosen, label)] = per_template
                while len(self._labels) > LABEL_CACHE_SIZE:
                    self._labels.popitem(last=False)
            for label in labels:
                self._labels.move_to_end((chosen, label))
            return np.stack([self._labels[(chosen, label)] for label in labels])

    def label_scores(self, image_vectors: np.ndarray, labels: Sequence[str], templates: Sequence[str] | None = None) -> np.ndarray:
        """(n, len(labels)) probabilities: softmax over labels of ``logit_scale * cosine``."""
        text = self.label_vectors(labels, templates)
        logits = self.logit_scale * (np.asarray(image_vectors, dtype=np.float32) @ text.T)
        return softmax(logits.astype(np.float64))


__all__ = ["DEFAULT_TEMPLATES", "DualEncoder", "check_labels", "check_templates", "normalise"]
