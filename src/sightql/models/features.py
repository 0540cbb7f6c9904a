"""The bundled ``imagenet`` model's pooled features, the predictor behind ``embed('imagenet', image)``
and image search: 1,280 numbers per image, unit length, from the same weights as ``classify('imagenet', ...)``.

Loaded once per (warehouse, device) through the one model cache (:func:`~sightql.models.loader.cached_predictor`);
on the CPU it runs its own cached ONNX export (:func:`~sightql.models.builtin.cached_imagenet_onnx`).
"""

from __future__ import annotations

from pathlib import Path

from sightql.models import builtin
from sightql.models.base import LoadedModel
from sightql.models.device import resolve_device
from sightql.models.loader import builtin_version, cached_predictor
from sightql.models.onnx.runtime import OnnxPredictor
from sightql.models.torch import efficientnet_lite
from sightql.models.torch.runtime import TorchPredictor

FEATURES_OF = ("imagenet",)  # the built-in image models whose embed() gives pooled features


def features_version(name: str = "imagenet") -> str:
    """'imagenet@builtin-<sha256 of its weights>:features': which exact weights gave a vector."""
    return f"{builtin_version(name)}:features"


def imagenet_features(models_dir: Path, device: str = "auto") -> LoadedModel:
    """The loaded features model (ONNX on the CPU, torch on CUDA)."""
    resolved = resolve_device(device)

    def load() -> LoadedModel:
        if resolved.startswith("cuda"):
            predictor: LoadedModel = TorchPredictor(efficientnet_lite.build_features(), builtin.imagenet_features_card(),
                                                    resolved)
        else:
            path, card = builtin.cached_imagenet_onnx(models_dir, features=True)
            predictor = OnnxPredictor(path, card)
        predictor.model_version = features_version()
        return predictor

    return cached_predictor((str(models_dir), "imagenet:features", resolved), load)
