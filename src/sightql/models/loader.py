"""The one cache of loaded models for the process, and the bundled models' loader.

Every path that runs a model (SQL functions, batch predict local and Dask, the API,
stage sampling) loads it through :func:`cached_predictor`, keyed by the exact version
and device, so a model used from SQL and from ``predict`` in one process loads (and
hashes its artifact) once. :func:`clear_cache` empties it; :func:`cache_stats` counts it.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any, Callable

from sightql.errors import MissingDependencyError, ModelNotFoundError
from sightql.models.base import LoadedModel
from sightql.models import builtin
from sightql.models.builtin import BUILTIN_NAMES
from sightql.models.onnx.runtime import OnnxPredictor
from sightql.models.text_embedder import load_minilm, minilm_sha256
from sightql.models.torch import efficientnet_lite
from sightql.models.torch.gpu import TorchGpuPredictor
from sightql.models.device import resolve_device

GPU_MAX_BATCH = 256  # the most images one GPU model call takes; engine batches hold two (decode overlaps compute)
_lock = threading.Lock()
_cache: dict[tuple[str, ...], LoadedModel] = {}
_loads = [0]  # how many times this process has loaded a model (cache misses)


def clear_cache() -> None:
    """Forget every loaded model, so the next use loads (and re-hashes) it again."""
    with _lock:
        _cache.clear()


def cache_stats() -> dict[str, int]:
    """``{"cached": models held now, "loads": models loaded by this process so far}``."""
    with _lock:
        return {"cached": len(_cache), "loads": _loads[0]}


def version_key(home: str, ref: str, sha256: str, derived_sha256: str | None, device: str) -> tuple[str, ...]:
    """The cache key of a registry version: a re-logged or changed artifact is a new key."""
    return ("registry", home, ref, sha256, derived_sha256 or "", device)


def builtin_key(name: str, models_dir: Path, device: str) -> tuple[str, ...]:
    # minilm is read from its package, not from the warehouse, so one copy serves every warehouse.
    return (name, device) if name == "minilm" else (str(models_dir), name, device)


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
            _loads[0] += 1
        return predictor


# Built-in variants, reached as references: the classifier in int8 (built, calibrated and gated on first use).
BUILTIN_VARIANTS = (builtin.INT8_REF,)


def is_builtin(ref: str) -> bool:
    return ref in BUILTIN_NAMES or ref in BUILTIN_VARIANTS


def builtin_version(name: str) -> str:
    """'imagenet@builtin-<sha256 of its weights>': which exact weights answered."""
    if name == builtin.INT8_REF:
        return f"imagenet@builtin-int8-{efficientnet_lite.weights_sha256()[:12]}"
    weights_sha256 = minilm_sha256 if name == "minilm" else efficientnet_lite.weights_sha256
    return f"{name}@builtin-{weights_sha256()[:12]}"


# What each built-in reads and does; listing them must not load (or import) the model.
_BUILTIN_ABOUT = {
    "imagenet": ("image", "classification", "EfficientNet-Lite0 trained on ImageNet-1k (1,000 labels), bundled"),
    "minilm": ("text", "embedding", "all-MiniLM-L6-v2 sentence embeddings (384 numbers per text), bundled"),
    builtin.INT8_REF: ("image", "classification", "imagenet in int8: about twice as fast on CPUs with VNNI; "
                       "quantized and gated (>= 98% same top-1) on first use or by `sightql models quantize imagenet`"),
}


def describe_builtins() -> list[dict[str, Any]]:
    """Each built-in model: name, input, task, description and exact version (None when its package is missing)."""
    described = []
    for name in (*BUILTIN_NAMES, *BUILTIN_VARIANTS):
        modality, task, description = _BUILTIN_ABOUT[name]
        try:
            version: str | None = builtin_version(name)
        except MissingDependencyError:
            version = None
        described.append({"name": name, "input": modality, "task": task, "description": description, "version": version})
    return described


def load_builtin(name: str, models_dir: Path, device: str) -> LoadedModel:
    if name == "minilm":
        return load_minilm(device)
    if name == builtin.INT8_REF:
        if device.startswith("cuda"):
            warnings.warn(f"{name} is an int8 model; it runs on the CPU with ONNX Runtime, not on {device}", stacklevel=3)
        int8_path, int8_card = builtin.cached_imagenet_int8(models_dir)
        return OnnxPredictor(int8_path, int8_card)
    if name != "imagenet":
        raise ModelNotFoundError(f"no built-in model {name!r}; built-in models are: {', '.join(BUILTIN_NAMES)}")
    if device.startswith("cuda"):  # fp16 on the GPU, JPEGs decoded there too (nvJPEG)
        return TorchGpuPredictor(builtin.imagenet_torch_module(), builtin.imagenet_card(), device, fp16=True,
                                 max_batch_size=GPU_MAX_BATCH)
    path, card = builtin.cached_imagenet_onnx(models_dir)
    return OnnxPredictor(path, card)


def load_predictor(ref: str, models_dir: Path, device: str = "auto") -> LoadedModel:
    """A built-in model, loaded once per (warehouse, name, device) and kept for the life of the process."""
    resolved = resolve_device(device)
    if not is_builtin(ref):
        raise ModelNotFoundError(f"no model named {ref!r}; built-in models are: {', '.join(BUILTIN_NAMES)}")

    def load() -> LoadedModel:
        predictor = load_builtin(ref, models_dir, resolved)
        predictor.model_version = builtin_version(ref)
        return predictor

    return cached_predictor(builtin_key(ref, models_dir, resolved), load)
