"""Small torch and Keras models built inside the tests (random, seeded weights; nothing downloaded),
and the helpers that run a registered model from a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

PHOTOS = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg")
# The tutorial's six steel-surface defect classes, and how it fed its Keras CNN.
DEFECTS = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
KERAS_INPUT = {"size": 200, "rescale": "1/255"}

# The result goes to a file: DuckDB draws its progress bar on stdout during a long query.
_FRESH_PROCESS = """
import json, sys, sightql
with sightql.connect(sys.argv[1]) as s:
    rows = s.sql(sys.argv[2], json.loads(sys.argv[3])).to_pylist()
with open(sys.argv[4], "w") as out:
    json.dump([r["v"] for r in rows], out)
"""


def fresh_process_vectors(warehouse: Path, query: str, params: Sequence[Any]) -> np.ndarray:
    """Column ``v`` of ``query``, run by a new Python process that reopens the warehouse."""
    result = warehouse.parent / "fresh-process-result.json"
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(warehouse), query, json.dumps(list(params)), str(result)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    return np.array(json.loads(result.read_text()), dtype=np.float64)


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

    from sightql.models import quiet

    # The TorchScript exporter: how most ONNX files people have were made, and 20-50 times faster
    # than torch.export here; its deprecation warnings are torch's news for whoever exports.
    with quiet.legacy_onnx_exporter():
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


def defect_cnn(keras: Any, *, seed: int = 0, head: str | None = "softmax", with_lambda: bool = False) -> Any:
    """The tutorial's metal-defect CNN, small: Conv2D/MaxPool stack on 200x200x3, Dense 6."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    stack = [keras.Input((200, 200, 3))]
    if with_lambda:
        stack.append(layers.Lambda(lambda x: x * 2.0 - 1.0, name="to_signed"))
    stack += [
        layers.Conv2D(8, 3, activation="relu"),
        layers.MaxPooling2D(4),
        layers.Conv2D(16, 3, activation="relu"),
        layers.MaxPooling2D(4),
        layers.Flatten(),
        layers.Dense(6, activation=head),
    ]
    return keras.Sequential(stack)


def keras_outputs(model: Any, batch: np.ndarray) -> np.ndarray:
    """The original in-memory Keras model run directly: the reference every path must match."""
    return model(batch, training=False).detach().cpu().numpy()
