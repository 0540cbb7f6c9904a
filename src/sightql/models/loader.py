"""Resolve a model reference to a loaded predictor, once per process."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from sightql.errors import MissingDependencyError, ModelNotFoundError
from sightql.models.base import LoadedModel
from sightql.models.builtin import BUILTIN_NAMES
from sightql.models.device import resolve_device

_lock = threading.Lock()
_cache: dict[tuple[str, ...], LoadedModel] = {}


def clear_cache() -> None:
    """Forget every loaded model, so the next use loads (and re-hashes) it again."""
    with _lock:
        _cache.clear()


def cached_predictor(key: tuple[str, ...], load: Callable[[], LoadedModel]) -> LoadedModel:
    """The predictor stored under ``key``, calling ``load()`` the first time only.

    Registry models use (warehouse, 'name@vN', sha256 of what is loaded, device) as
    the key, so a moved alias is seen at once and each version loads once per process.
    """
    with _lock:
        predictor = _cache.get(key)
        if predictor is None:
            predictor = load()
            _cache[key] = predictor
        return predictor


def is_builtin(ref: str) -> bool:
    return ref in BUILTIN_NAMES


def builtin_version(name: str) -> str:
    """'imagenet@builtin-<sha256 of its weights>': which exact weights answered."""
    if name == "minilm":
        from sightql.models.text_embedder import minilm_sha256 as weights_sha256
    else:
        from sightql.models.torch.efficientnet_lite import weights_sha256

    return f"{name}@builtin-{weights_sha256()[:12]}"


# What each built-in reads and does; listing them must not load (or import) the model.
_BUILTIN_ABOUT = {
    "imagenet": ("image", "classification", "EfficientNet-Lite0 trained on ImageNet-1k (1,000 labels), bundled"),
    "minilm": ("text", "embedding", "all-MiniLM-L6-v2 sentence embeddings (384 numbers per text), bundled"),
}


def describe_builtins() -> list[dict[str, Any]]:
    """Each built-in model: name, input, task, description and exact version (None when its package is missing)."""
    described = []
    for name in BUILTIN_NAMES:
        modality, task, description = _BUILTIN_ABOUT[name]
        try:
            version: str | None = builtin_version(name)
        except MissingDependencyError:
            version = None
        described.append({"name": name, "input": modality, "task": task, "description": description, "version": version})
    return described


def load_builtin(name: str, models_dir: Path, device: str) -> LoadedModel:
    from sightql.models import builtin

    if name == "minilm":
        from sightql.models.text_embedder import load_minilm

        return load_minilm(device)
    if name != "imagenet":
        raise ModelNotFoundError(f"no built-in model {name!r}; built-in models are: {', '.join(BUILTIN_NAMES)}")
    if device.startswith("cuda"):
        from sightql.models.torch.runtime import TorchPredictor

        return TorchPredictor(builtin.imagenet_torch_module(), builtin.imagenet_card(), device)
    from sightql.models.onnx.runtime import OnnxPredictor

    path, card = builtin.cached_imagenet_onnx(models_dir)
    return OnnxPredictor(path, card)


def load_predictor(ref: str, models_dir: Path, device: str = "auto") -> LoadedModel:
    """Loaded once per (warehouse, reference, device) and kept for the life of the process."""
    resolved = resolve_device(device)
    # minilm is read from its package, not from the warehouse, so one copy serves every warehouse.
    key = (ref, resolved) if ref == "minilm" else (str(models_dir), ref, resolved)
    with _lock:
        predictor = _cache.get(key)
        if predictor is None:
            if ref not in BUILTIN_NAMES:
                raise ModelNotFoundError(
                    f"no model named {ref!r}; built-in models are: {', '.join(BUILTIN_NAMES)}"
                )
            predictor = load_builtin(ref, models_dir, resolved)
            predictor.model_version = builtin_version(ref)
            _cache[key] = predictor
        return predictor
