"""The one model resolver: a reference to a small, picklable description of one exact version.

:meth:`sightql.registry.Registry.spec` (through :func:`spec_for`) turns ``'imagenet'`` or ``'tex@prod'`` into a :class:`ModelSpec` (for a registry
version: artifact path, sha256, card JSON and framework, all inside its version record);
:func:`load_model` turns a spec into a predictor through the process's one model cache
(:mod:`sightql.models.loader`), keyed by the exact version and device. Workers get specs,
never loaded models; each process loads a version once, re-hashing its artifact first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sightql.errors import ConfigError
from sightql.models.base import LoadedModel
from sightql.models.card import ModelCard
from sightql.models.device import resolve_device
from sightql.models.loader import builtin_version, cache_stats, is_builtin, load_predictor
from sightql.registry.loading import cached_version
from sightql.registry.records import VersionRecord


@dataclass(frozen=True)
class ModelSpec:
    """Which exact model to run, where its files are, and on which device."""

    model_version: str  # e.g. 'xray@v3' or 'imagenet@builtin-579344248a93'
    home: str  # the warehouse folder; artifacts are found relative to it
    device: str  # as requested: 'auto', 'cpu' or 'cuda'; each worker resolves it for itself
    builtin: str | None = None  # a built-in model's name, or None for a registry version
    record: VersionRecord | None = None  # the registry row: artifact path, sha256, card JSON, framework


def spec_for(resolve: Callable[[str], VersionRecord], home: Path, ref: str, device: str) -> ModelSpec:
    """Resolve ``ref`` once, now (``resolve`` names a registry version): a moved alias during a run
    does not change the model mid-run."""
    if not isinstance(ref, str) or not ref:
        raise ConfigError(f"model must be a reference such as 'imagenet' or 'xray@prod', not {ref!r}")
    if is_builtin(ref):
        return ModelSpec(builtin_version(ref), str(home), device, builtin=ref)
    record = resolve(ref)
    return ModelSpec(record.ref, str(home), device, record=record)


def load_model(spec: ModelSpec) -> LoadedModel:
    """The loaded model for ``spec``, loaded (and its artifact hash checked) once per process and device."""
    device = resolve_device(spec.device)
    if spec.builtin is not None:
        return load_predictor(spec.builtin, Path(spec.home) / "models", device)
    record = spec.record
    assert record is not None
    return cached_version(record, Path(spec.home), device)  # verifies the sha256


def check_classifier(card: ModelCard, version: str) -> None:
    if card.task == "zero-shot":
        raise ConfigError(
            f"{version} is a zero-shot model with no fixed labels; use classify_labels(model, image, ['label', ...]) "
            "(Python: session.classify_labels(images, labels, model=...))"
        )
    if card.modality == "text":
        raise ConfigError(f"{version} reads text, not images; predict needs an image classification model")
    if not card.labels:
        raise ConfigError(
            f"{version} has no labels, so it cannot classify; use embed(model, image) in SQL for embeddings"
        )


def loaded_model_count() -> int:
    """How many models this process has loaded (tests check the once-per-worker rule)."""
    return cache_stats()["loads"]


def card_of(spec: ModelSpec) -> ModelCard:
    """The model's card without loading the model (so a wrong model fails before any work)."""
    if spec.builtin is not None:
        if not spec.builtin.startswith("imagenet"):
            raise ConfigError(f"{spec.builtin} reads text, not images; predict needs an image classification model")
        # The bundled model's card comes with its cached export; building it afresh would import torchvision.
        return load_model(spec).card
    assert spec.record is not None
    return spec.record.card
