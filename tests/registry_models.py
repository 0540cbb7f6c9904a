"""Small torch models built inside the tests (random, seeded weights; nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PHOTOS = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg")


def tiny_classifier(classes: int = 3, seed: int = 0, favour: int | None = None):
    """A few-parameter CNN; ``favour`` gives one class a large bias so its answer is known."""
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, classes),
    )
    if favour is not None:
        with torch.no_grad():
            model[-1].bias.zero_()
            model[-1].bias[favour] = 50.0
    return model.eval()


def resnet18(classes: int = 10, seed: int = 0):
    import torch
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None, num_classes=classes).eval()


def write_onnx(module, path: Path, size: int = 32) -> Path:
    """A plain ONNX file, as a user would export one (dynamic batch)."""
    import torch

    torch.onnx.export(
        module, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, input_names=["pixels"],
        output_names=["logits"], dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
    )
    return path


def eager_probabilities(module, batch: np.ndarray) -> np.ndarray:
    """The original torch module run eagerly, softmaxed: the reference every path must match."""
    import torch

    with torch.inference_mode():
        return torch.softmax(module(torch.from_numpy(batch)), dim=1).numpy()


def photo_batch(photos_dir: Path, spec) -> np.ndarray:
    from sightql.images.preprocess import preprocess

    return np.stack([preprocess((photos_dir / name).read_bytes(), spec) for name in PHOTOS])
