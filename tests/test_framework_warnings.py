"""A normal run prints no framework chatter: ONNX exports, Keras loads and exports, and embed_text run
with every warning turned into an error, and nothing is drawn on stderr."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from sightql.images.spec import InputSpec
from sightql.models.card import ModelCard
from sightql.models.torch.export import export_onnx
from tests.registry_models import DEFECTS, defect_cnn, tiny_classifier

CARD = ModelCard(name="tiny", labels=("a", "b", "c"), input=InputSpec(height=32, width=32), output="logits")


def test_storing_loading_and_exporting_torchscript_warns_nothing(tmp_path):
    from sightql.models.torch.files import load_module, save_module

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        name, fmt = save_module(tiny_classifier(3), tmp_path, None, (1, 3, 32, 32))  # no architecture: TorchScript
        module = load_module(tmp_path / name, fmt, None, trusted=False)
        diff = export_onnx(module, CARD, tmp_path / "tiny.onnx")
    assert fmt == "torchscript" and diff <= 1e-4 and (tmp_path / "tiny.onnx").stat().st_size > 0


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    from sightql.models.keras.backend import import_keras

    path = tmp_path_factory.mktemp("keras") / "defects.keras"
    with warnings.catch_warnings():  # saving is the test's business, not SightQL's (see pyproject)
        warnings.simplefilter("ignore")
        defect_cnn(import_keras()).save(path)
    return path


def test_loading_running_and_exporting_a_keras_model_warns_nothing(keras_file, tmp_path):
    from sightql.models.keras import export_keras_onnx, inspect_keras, load_keras_predictor

    batch = np.random.default_rng(0).random((2, 200, 200, 3), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = inspect_keras(keras_file)
        card = ModelCard(name="defects", framework="keras", labels=DEFECTS, output=info.output,
                         input=info.input_spec(mean=(0.0,) * 3, std=(1.0,) * 3, scale=1 / 255, resize="squash"))
        probabilities = load_keras_predictor(keras_file, card).predict(batch)
        diff = export_keras_onnx(keras_file, card, tmp_path / "defects.onnx")
    assert probabilities.shape == (2, 6) and diff <= 1e-4


def test_embed_text_warns_nothing_and_draws_no_progress_bar(session, capfd):
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = session.sql("SELECT embed_text('minilm', 'a cat on a mat') AS v").to_pylist()
    assert len(rows[0]["v"]) == 384
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err and "it/s" not in out + err


def test_refusing_a_plain_pickle_warns_nothing(session, tmp_path):
    from sightql.errors import UnsafeModelError

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"weights": Path("/etc/passwd")}))  # plain pickle, protocol 4 or later
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UnsafeModelError, match="trust=True"):
            session.registry.log_model(path, "evil", labels=["a"], architecture="resnet18")
