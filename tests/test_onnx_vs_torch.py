"""The ONNX Runtime export of the bundled model agrees with torch on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from sightql.images.preprocess import preprocess
from sightql.models.builtin import imagenet_torch_module
from sightql.models.torch.runtime import TorchPredictor


@pytest.mark.slow
def test_onnx_and_torch_probabilities_agree_within_1e_4(session, photos_dir):
    onnx = session.predictor("imagenet")
    assert onnx.device == "cpu" and type(onnx).__name__ == "OnnxPredictor"
    torch_model = TorchPredictor(imagenet_torch_module(), onnx.card, "cpu")
    paths = sorted(photos_dir.glob("*.jpg")) + sorted(photos_dir.glob("*.png"))
    batch = np.stack([preprocess(p.read_bytes(), onnx.card.input) for p in paths])
    from_onnx, from_torch = onnx.predict(batch), torch_model.predict(batch)
    assert from_onnx.shape == (len(paths), 1000)
    np.testing.assert_allclose(from_onnx.sum(axis=1), 1.0, atol=1e-5)
    assert float(np.abs(from_onnx - from_torch).max()) <= 1e-4
    assert (from_onnx.argmax(axis=1) == from_torch.argmax(axis=1)).all()
