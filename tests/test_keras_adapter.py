"""The Keras adapter against real Keras 3 files (.keras, .h5, legacy Keras 2 style .h5) and real photos.

The models are built here, shaped like the tutorial's metal-defect CNN (200x200 RGB in, six
defect classes out) but small; every loaded model is compared with the in-memory original.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sightql.errors import ConfigError, UnsafeModelError
from sightql.images.preprocess import preprocess
from sightql.models.base import softmax
from sightql.models.card import ModelCard
from sightql.models.keras import KerasInfo, inspect_keras, keras_config, load_keras_predictor, needs_input_layer
from sightql.models.keras.backend import import_keras
from tests.registry_models import DEFECTS, defect_cnn, keras_outputs

TOLERANCE = 1e-4


def run(keras: Any, model: Any, batch: np.ndarray) -> np.ndarray:
    return keras_outputs(model, batch)


def card_for(info: KerasInfo, name: str = "defects") -> ModelCard:
    spec = info.input_spec(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1 / 255, resize="squash")
    return ModelCard(name=name, framework="keras", labels=DEFECTS, input=spec, output=info.output)


@pytest.fixture(scope="module")
def keras() -> Any:
    return import_keras()


@pytest.fixture(scope="module")
def photo_batch() -> np.ndarray:
    """Three real photos, JPEG-encoded then preprocessed the way a defects card asks."""
    import skimage.data
    from PIL import Image

    spec = card_for(KerasInfo(200, 200, 3, 6, True)).input
    arrays = []
    for name in ("chelsea", "coffee", "astronaut"):
        buffer = io.BytesIO()
        Image.fromarray(getattr(skimage.data, name)()).save(buffer, "JPEG")
        arrays.append(preprocess(buffer.getvalue(), spec))
    return np.stack(arrays)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, keras) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("keras-models")
    model = defect_cnn(keras)
    paths = {"h5": folder / "defects.h5", "keras": folder / "defects.keras"}
    for path in paths.values():
        model.save(path)
    return {"model": model, **paths}


def write_keras2_style_h5(source: Path, destination: Path) -> None:
    """Rewrite a Keras 3 .h5 the way Keras 2 wrote a Sequential built without an Input layer.

    Keras 2 had no InputLayer entry in such configs: the first layer carried
    ``batch_input_shape`` and dtypes were plain strings.
    """
    import h5py

    destination.write_bytes(source.read_bytes())
    with h5py.File(destination, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        layers = config["config"]["layers"]
        input_layer = layers.pop(0)
        assert input_layer["class_name"] == "InputLayer"
        for layer in layers:
            layer["config"]["dtype"] = "float32"
        layers[0]["config"]["batch_input_shape"] = input_layer["config"]["batch_shape"]
        config["config"].pop("build_input_shape", None)
        handle.attrs["model_config"] = json.dumps(config)
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["backend"] = "tensorflow"


@pytest.mark.parametrize("fmt", ["h5", "keras"])
def test_inspect_reads_input_size_outputs_and_softmax(saved, fmt):
    info = inspect_keras(saved[fmt])
    assert info == KerasInfo(height=200, width=200, channels=3, outputs=6, softmax=True, layout="NHWC")
    assert info.output == "probabilities"


@pytest.mark.parametrize("fmt", ["h5", "keras"])
def test_loaded_model_matches_the_original_on_real_photos(keras, saved, photo_batch, fmt):
    predictor = load_keras_predictor(saved[fmt], card_for(inspect_keras(saved[fmt])))
    expected = run(keras, saved["model"], photo_batch)
    got = predictor.predict(photo_batch)
    assert got.shape == (3, 6) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= TOLERANCE
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert predictor.model_version == "defects" and predictor.device == "cpu"


def test_the_comparison_would_notice_other_weights(keras, saved, photo_batch):
    """Guards the test above: outputs vary by photo, and another set of weights is far outside the tolerance."""
    expected = run(keras, saved["model"], photo_batch)
    assert np.abs(expected[0] - expected[1]).max() > 10 * TOLERANCE
    other = run(keras, defect_cnn(keras, seed=1), photo_batch)
    assert np.abs(other - expected).max() > 10 * TOLERANCE


def test_keras2_h5_without_input_layer_is_rebuilt_and_matches(keras, saved, photo_batch, tmp_path):
    legacy = tmp_path / "defects-keras2.h5"
    write_keras2_style_h5(saved["h5"], legacy)
    assert needs_input_layer(keras_config(legacy))
    assert not needs_input_layer(keras_config(saved["h5"]))
    # Plain Keras 3 cannot build this file (warning first that the layer names its input shape);
    # that is what the adapter works around.
    with pytest.raises(ValueError), pytest.warns(UserWarning, match="input_shape"):
        keras.models.load_model(legacy, compile=False)

    info = inspect_keras(legacy)
    assert (info.height, info.width, info.channels, info.outputs, info.softmax) == (200, 200, 3, 6, True)
    predictor = load_keras_predictor(legacy, card_for(info))
    got = predictor.predict(photo_batch)
    assert np.abs(got - run(keras, saved["model"], photo_batch)).max() <= TOLERANCE


@pytest.mark.parametrize("fmt", ["h5", "keras"])
def test_lambda_layer_is_refused_unless_trusted(keras, photo_batch, tmp_path, fmt):
    model = defect_cnn(keras, with_lambda=True)
    path = tmp_path / f"lambda-defects.{fmt}"
    model.save(path)
    card = card_for(KerasInfo(200, 200, 3, 6, True))

    with pytest.raises(UnsafeModelError) as refused:
        load_keras_predictor(path, card)
    message = str(refused.value)
    assert path.name in message and "Lambda" in message and "trust=True" in message
    with pytest.raises(UnsafeModelError):
        inspect_keras(path)

    predictor = load_keras_predictor(path, card, trust=True)
    assert np.abs(predictor.predict(photo_batch) - run(keras, model, photo_batch)).max() <= TOLERANCE


def test_trusted_lambda_in_a_keras2_h5_loads(keras, photo_batch, tmp_path):
    model = defect_cnn(keras, with_lambda=True)
    modern, legacy = tmp_path / "modern.h5", tmp_path / "legacy.h5"
    model.save(modern)
    write_keras2_style_h5(modern, legacy)
    card = card_for(KerasInfo(200, 200, 3, 6, True))
    with pytest.raises(UnsafeModelError):
        load_keras_predictor(legacy, card)
    predictor = load_keras_predictor(legacy, card, trust=True)
    assert np.abs(predictor.predict(photo_batch) - run(keras, model, photo_batch)).max() <= TOLERANCE


def test_logits_model_gets_softmax_applied(keras, photo_batch, tmp_path):
    model = defect_cnn(keras, head=None)
    path = tmp_path / "logits.keras"
    model.save(path)
    info = inspect_keras(path)
    assert not info.softmax and info.output == "logits"
    got = load_keras_predictor(path, card_for(info)).predict(photo_batch)
    assert np.abs(got - softmax(run(keras, model, photo_batch))).max() <= TOLERANCE


def test_files_that_are_not_keras_models_give_config_errors(keras, saved, tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not a model\n")
    archive = tmp_path / "photos.keras"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("readme.txt", "no config here")
    weights_only = tmp_path / "defects.weights.h5"
    saved["model"].save_weights(weights_only)
    card = card_for(KerasInfo(200, 200, 3, 6, True))

    for path, words in ((text, "neither"), (archive, "config.json"), (weights_only, "model_config")):
        with pytest.raises(ConfigError, match=words):
            keras_config(path)
        with pytest.raises(ConfigError):
            load_keras_predictor(path, card)
    with pytest.raises(ConfigError, match="not a file"):
        keras_config(tmp_path / "missing.keras")


def test_unknown_layer_class_is_named(saved, tmp_path):
    import h5py

    path = tmp_path / "custom.h5"
    path.write_bytes(saved["h5"].read_bytes())
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        config["config"]["layers"][1]["class_name"] = "DefectAttention"
        handle.attrs["model_config"] = json.dumps(config)
    with pytest.raises(ConfigError, match="DefectAttention"):
        inspect_keras(path)


def test_card_that_disagrees_with_the_model_is_refused(saved):
    info = inspect_keras(saved["keras"])
    wrong_size = ModelCard(name="defects", framework="keras", labels=DEFECTS, input=info.input_spec(height=224))
    with pytest.raises(ConfigError, match="height 224"):
        load_keras_predictor(saved["keras"], wrong_size)
    wrong_labels = ModelCard(name="defects", labels=DEFECTS[:5], input=card_for(info).input)
    with pytest.raises(ConfigError, match="5 labels"):
        load_keras_predictor(saved["keras"], wrong_labels)


def test_keras_already_loaded_with_another_backend_is_refused(keras, monkeypatch):
    # Only the torch backend is installed here, so the other backend is simulated.
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ConfigError, match="'jax' backend.*KERAS_BACKEND=torch"):
        import_keras()


@pytest.mark.slow
def test_another_backend_in_the_environment_is_overridden_before_keras_loads():
    code = "from sightql.models.keras.backend import import_keras; print(import_keras().backend.backend())"
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "torch"


@pytest.mark.slow
def test_onnx_export_answers_like_keras(saved, photo_batch, tmp_path):
    from sightql.models.keras.export import export_keras_onnx
    from sightql.models.onnx.runtime import OnnxPredictor

    card = card_for(inspect_keras(saved["keras"]))
    destination = tmp_path / "defects.onnx"
    assert export_keras_onnx(saved["keras"], card, destination) <= TOLERANCE
    via_onnx = OnnxPredictor(destination, card).predict(photo_batch)
    via_keras = load_keras_predictor(saved["keras"], card).predict(photo_batch)
    assert np.abs(via_onnx - via_keras).max() <= TOLERANCE


def test_keras_archive_under_another_suffix_asks_for_a_rename(saved, tmp_path):
    renamed = tmp_path / "defects.zip"
    renamed.write_bytes(saved["keras"].read_bytes())
    assert keras_config(renamed)["class_name"] == "Sequential"
    with pytest.raises(ConfigError, match="rename"):
        inspect_keras(renamed)
