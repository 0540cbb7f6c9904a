"""A small, picklable description of one exact model version, and its per-process cache.

Workers get a :class:`ModelSpec` (artifact path, sha256, card JSON and framework, all
inside the registry's version record), never a loaded model. Each worker process
loads it once, re-hashing the artifact before it is run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sightql.errors import ConfigError
from sightql.models.base import Predictor
from sightql.registry.records import VersionRecord

if TYPE_CHECKING:
    from sightql.models.card import ModelCard
    from sightql.session import Session

_lock = threading.Lock()
_loaded: dict[tuple[str, ...], Predictor] = {}


@dataclass(frozen=True)
class ModelSpec:
    """Which exact model to run, where its files are, and on which device."""

    model_version: str  # e.g. 'xray@v3' or 'imagenet@builtin-579344248a93'
    home: str  # the warehouse folder; artifacts are found relative to it
    device: str  # as requested: 'auto', 'cpu' or 'cuda'; each worker resolves it for itself
    builtin: str | None = None  # a built-in model's name, or None for a registry version
    record: VersionRecord | None = None  # the registry row: artifact path, sha256, card JSON, framework

    @property
    def cache_key(self) -> tuple[str, ...]:
        sha = self.record.sha256 if self.record else ""
        return (self.home, self.model_version, sha, self.device)


def spec_for(session: "Session", ref: str, device: str | None = None) -> ModelSpec:
    """Resolve ``ref`` once, now: a moved alias during a run does not change the model mid-run."""
    from sightql.models.loader import builtin_version, is_builtin

    if not isinstance(ref, str) or not ref:
        raise ConfigError(f"model must be a reference such as 'imagenet' or 'xray@prod', not {ref!r}")
    wanted = device or session.device
    if is_builtin(ref):
        return ModelSpec(builtin_version(ref), str(session.home), wanted, builtin=ref)
    record = session.registry.resolve(ref)
    return ModelSpec(record.ref, str(session.home), wanted, record=record)


def load_model(spec: ModelSpec) -> Predictor:
    """The loaded model for ``spec``, loaded (and its artifact hash checked) once per process."""
    with _lock:
        predictor = _loaded.get(spec.cache_key)
        if predictor is None:
            predictor = _load(spec)
            _loaded[spec.cache_key] = predictor
    return predictor


def _load(spec: ModelSpec) -> Predictor:
    from sightql.models.device import resolve_device

    device = resolve_device(spec.device)
    if spec.builtin is not None:
        from sightql.models.loader import load_predictor

        model = load_predictor(spec.builtin, Path(spec.home) / "models", device)
    else:
        from sightql.registry.loading import load_version

        assert spec.record is not None
        model = load_version(spec.record, Path(spec.home), device)  # verifies the artifact's sha256
    check_classifier(model.card, spec.model_version)  # type: ignore[attr-defined]
    return model  # type: ignore[return-value]


def check_classifier(card: "ModelCard", version: str) -> None:
    if card.modality == "text":
        raise ConfigError(f"{version} reads text, not images; predict needs an image classification model")
    if not card.labels:
        raise ConfigError(
            f"{version} has no labels, so it cannot classify; use embed(model, image) in SQL for embeddings"
        )


def loaded_model_count() -> int:
    """How many models this process has loaded through specs (tests check the once-per-worker rule)."""
    return len(_loaded)


def card_of(spec: ModelSpec) -> "ModelCard":
    """The model's card without loading the model (so a wrong model fails before any work)."""
    if spec.builtin is not None:
        if spec.builtin != "imagenet":
            raise ConfigError(f"{spec.builtin} reads text, not images; predict needs an image classification model")
        # The bundled model's card comes with its cached export; building it afresh would import torchvision.
        return load_model(spec).card
    assert spec.record is not None
    return spec.record.card
