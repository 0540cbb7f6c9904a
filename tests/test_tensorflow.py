"""TensorFlow SavedModels in the registry: folders and archives, from a stage, ONNX or TensorFlow at run time,
text embedders in SQL, and every refusal in one sentence.

Each model is built here with tf.Module + tf.saved_model.save (seeded weights, nothing downloaded).
TensorFlow's own outputs, run on the same preprocessed pixels, are the reference every path must match.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

import sightql
from sightql.errors import ConfigError, MissingDependencyError, UnsafeModelError
from sightql.models.base import softmax
from sightql.models.loader import clear_cache
from sightql.models.tensorflow.backend import import_tensorflow
from tests.cli_tree import run_main
from tests.registry_models import PHOTOS, photo_batch, tiny_classifier, write_onnx

if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("TensorFlow is not installed (the sightql[tensorflow] extra)", allow_module_level=True)
tf = import_tensorflow()  # through SightQL's import, which loads triton first (see models/tensorflow/backend.py)

pytestmark = pytest.mark.tensorflow

LABELS = ["cat", "dog", "bird"]
CLI = [sys.executable, "-m", "sightql"]
TEXTS = ["A man is playing a guitar.", "Someone plays an acoustic guitar.", "The stock market fell sharply today."]


# ---- the models, built once for the module ------------------------------------------------------------

class Classifier(tf.Module):
    """A small CNN on 32x32 RGB, NHWC, pixels in [0, 1]: three logits."""

    def __init__(self):
        self.kernel = tf.Variable(tf.random.stateless_normal([3, 3, 3, 4], seed=[1, 2]))
        self.dense = tf.Variable(tf.random.stateless_normal([4, 3], seed=[3, 4]))

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="pixels")])
    def serve(self, pixels):
        features = tf.nn.relu(tf.nn.conv2d(pixels * 4.0 - 2.0, self.kernel, 2, "SAME"))
        return {"logits": tf.matmul(tf.reduce_mean(features, axis=[1, 2]), self.dense)}


class TextEmbedder(tf.Module):
    """Strings in, 8 unit-length floats out: lower-cased words hashed into a table, averaged."""

    def __init__(self):
        self.table = tf.Variable(tf.random.stateless_normal([97, 8], seed=[5, 6]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve(self, sentences):
        words = tf.strings.split(tf.strings.lower(sentences))
        vectors = tf.reduce_mean(tf.gather(self.table, tf.strings.to_hash_bucket_fast(words, 97)), axis=1)
        return {"embedding": tf.math.l2_normalize(vectors, axis=-1)}


class Unconvertible(tf.Module):
    """An image embedder using Lgamma, an op tf2onnx has no ONNX equivalent for."""

    @tf.function(input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32, name="image")])
    def serve(self, image):
        means = tf.reduce_mean(image, axis=[1, 2])
        return {"features": tf.math.lgamma(means + 1.5)}


class TwoHeads(tf.Module):
    """Two float outputs: which one is meant must be chosen."""

    @tf.function(input_signature=[tf.TensorSpec([None, 3, 16, 16], tf.float32, name="image")])
    def serve(self, image):
        means = tf.reduce_mean(image, axis=[2, 3])
        return {"logits": means * 3.0, "probabilities": tf.nn.softmax(means * 3.0)}


class NotAnImage(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 10], tf.float32, name="features")])
    def serve(self, features):
        return {"score": features * 2.0}


class ReadsAFile(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image")])
    def serve(self, image):
        size = tf.cast(tf.strings.length(tf.io.read_file("/etc/hostname")), tf.float32)
        return {"out": tf.reduce_mean(image, axis=[1, 2]) + size}


def save(module: tf.Module, folder: Path) -> Path:
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def zip_folder(folder: Path, archive: Path, inside: str | None = None) -> Path:
    """``archive`` holding ``folder``'s files under ``inside/`` (as a zipped folder), or at its top."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            out.write(path, f"{inside}/{rel}" if inside else rel)
    return archive


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("savedmodels")
    models = {name: save(module, folder / name) for name, module in (
        ("classifier", Classifier()), ("text", TextEmbedder()), ("odd", Unconvertible()),
        ("two_heads", TwoHeads()), ("not_image", NotAnImage()), ("reads_file", ReadsAFile()),
    )}
    models["classifier_zip"] = zip_folder(models["classifier"], folder / "clf.zip", inside="clf")
    with tarfile.open(folder / "text.tar.gz", "w:gz") as tar:  # as TF-Hub hands them out: files at the top
        for path in sorted(models["text"].rglob("*")):
            tar.add(path, path.relative_to(models["text"]).as_posix(), recursive=False)
    models["text_tgz"] = folder / "text.tar.gz"
    return models


def tf_outputs(folder: Path, batch, output: str) -> np.ndarray:
    """The SavedModel's own answer, loaded and called by TensorFlow directly."""
    signature = tf.saved_model.load(str(folder)).signatures["serving_default"]
    (name,) = signature.structured_input_signature[1]
    values = tf.constant(batch, dtype=tf.string) if isinstance(batch, list) else tf.constant(batch, tf.float32)
    return signature(**{name: values})[output].numpy()


@pytest.fixture(scope="module")
def home(tmp_path_factory, model_cache, built, photos_dir) -> Path:
    """One warehouse for the module: the zipped classifier logged from a stage, the photos loaded."""
    folder = tmp_path_factory.mktemp("tf") / "warehouse"
    shutil.copytree(model_cache, folder / "models", copy_function=os.link)
    with sightql.connect(folder) as session:
        session.create_stage("models")
        session.stage("models").put(built["classifier_zip"])
        session.load_images("photos", photos_dir / PHOTOS[0])
        for name in PHOTOS[1:]:
            session.load_images("photos", photos_dir / name)
        session.registry.log_model("@models/clf.zip", "clf", labels=LABELS)
    return folder


# ---- an image classifier, zipped, from a stage -----------------------------------------------------------

@pytest.mark.slow
def test_a_zipped_classifier_logged_from_a_stage_classifies_in_sql_as_tensorflow_does(home, built, photos_dir):
    with sightql.connect(home) as session:
        version = session.registry.get_model("clf").version()
        assert (version.ref, version.framework, version.task) == ("clf@v1", "tensorflow", "classification")
        assert version.artifact_path.name == "clf" and (version.artifact_path / "saved_model.pb").is_file()
        assert version.runtime.startswith("ONNX Runtime (converted from TensorFlow")
        spec = version.card.input
        assert (spec.height, spec.width, spec.channels, spec.layout, spec.resize) == (32, 32, 3, "NHWC", "squash")
        assert spec.scale == pytest.approx(1 / 255) and spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0)
        assert version.record.options == {"input_name": "pixels", "modality": "image", "output_name": "logits",
                                          "signature": "serving_default"}
        rows = session.sql(
            "SELECT relative_path, classify('clf', image) AS c, embed('clf', image) AS p FROM photos ORDER BY relative_path"
        ).to_pylist()
    expected = softmax(tf_outputs(built["classifier"], photo_batch(photos_dir, spec), "logits"))
    by_name = {row["relative_path"].rsplit("/", 1)[-1]: row for row in rows}
    for name, want in zip(PHOTOS, expected):
        row = by_name[name]
        assert np.abs(np.array(row["p"]) - want).max() <= 1e-4
        assert row["c"]["label"] == LABELS[int(want.argmax())]
        assert row["c"]["score"] == pytest.approx(float(want.max()), abs=1e-4)


@pytest.mark.slow
def test_the_http_api_answers_as_tensorflow_does(home, built, photos_dir):
    from fastapi.testclient import TestClient

    from sightql.api import ApiLimits, create_app

    with sightql.connect(home) as session:
        spec = session.registry.get_model("clf").version().card.input
    expected = softmax(tf_outputs(built["classifier"], photo_batch(photos_dir, spec), "logits"))
    files = [("file", (name, (photos_dir / name).read_bytes(), "image/jpeg")) for name in PHOTOS]
    with TestClient(create_app(home, None, ApiLimits())) as client:
        response = client.post("/v1/models/clf/predict?k=3", files=files)
        listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert response.status_code == 200, response.text
    assert listed["clf"]["versions"][0]["runtime"] == "ONNX Runtime (converted from TensorFlow at log time and checked against it)"
    body = response.json()
    assert body["model_version"] == "clf@v1"
    for prediction, want in zip(body["predictions"], expected):
        scores = {item["label"]: item["score"] for item in prediction["top"]}
        assert scores == pytest.approx({label: float(p) for label, p in zip(LABELS, want)}, abs=1e-4)


@pytest.mark.slow
def test_the_cli_logs_from_a_stage_and_shows_the_runtime(home, built):
    """The real `sightql` in a subprocess, as a user runs it."""
    w = ["-w", str(home)]
    logged = subprocess.run([*CLI, "models", "log", "@models/clf.zip", "--name", "clf", "--labels", ",".join(LABELS),
                             "--framework", "tensorflow", *w], capture_output=True, text=True)
    assert logged.returncode == 0, logged.stderr
    assert logged.stdout.startswith("logged clf@v2 (tensorflow, classification, sha256 ")
    shown = subprocess.run([*CLI, "models", "show", "clf@v2", *w], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "framework:   tensorflow" in shown.stdout
    assert "runtime:     ONNX Runtime (converted from TensorFlow at log time and checked against it)" in shown.stdout
    assert "3x32x32 NHWC, scale 0.00392157" in shown.stdout


def test_a_savedmodel_folder_in_a_stage_and_a_tarball_log_too(home, built):
    with sightql.connect(home) as session:
        session.stage("models").put(built["classifier"], "folders/clf_folder")
        version = session.registry.log_model("@models/folders/clf_folder", "clf_folder", labels=LABELS)
        assert version.framework == "tensorflow" and version.artifact_path.name == "clf_folder"
        assert version.sha256 == session.registry.get_model("clf").version("v1").sha256  # the same SavedModel files
        text = session.registry.log_model(built["text_tgz"], "text_tgz")
        assert (text.framework, text.task, text.card.modality, text.artifact_path.name) == (
            "tensorflow", "embedding", "text", "text")


def test_another_framework_logs_from_a_stage(home, tmp_path):
    onnx_file = write_onnx(tiny_classifier(3, favour=1), tmp_path / "pets.onnx")
    with sightql.connect(home) as session:
        session.stage("models").put(onnx_file, "onnx")
        version = session.registry.log_model("@models/onnx/pets.onnx", "pets", labels=LABELS, input={"size": 32})
        assert (version.framework, version.runtime, version.artifact_path.name) == ("onnx", "ONNX Runtime", "pets.onnx")
        row = session.sql("SELECT classify('pets', image) AS c FROM photos LIMIT 1").to_pylist()[0]
        assert row["c"]["label"] == "dog"
        with pytest.raises(sightql.errors.StageError, match=r"nothing in @models matches 'onnx/nope.onnx'"):
            session.registry.log_model("@models/onnx/nope.onnx", "nope", labels=LABELS)


# ---- a text embedder ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_text_embedder_answers_embed_text_in_sql_as_tensorflow_does(home, built):
    expected = tf_outputs(built["text"], TEXTS, "embedding")
    with sightql.connect(home) as session:
        version = session.registry.log_model(built["text"], "sentences")
        assert (version.framework, version.task, version.card.modality) == ("tensorflow", "embedding", "text")
        assert version.runtime == ("runs through TensorFlow: its signature takes strings, and ONNX Runtime has no "
                                   "standard ops for TensorFlow's text ops")
        session.sql("CREATE TABLE notes (i INTEGER, body VARCHAR)")
        session.sql("INSERT INTO notes VALUES (1, ?), (2, ?), (3, NULL), (4, ?)", [TEXTS[0], TEXTS[1], TEXTS[2]])
        rows = session.sql("SELECT i, embed_text('sentences', body) AS v FROM notes ORDER BY i").to_pylist()
        session.create_function("sentence_vector", "sentences")
        named = session.sql("SELECT sentence_vector(?) AS v", [TEXTS[1]]).to_pylist()[0]["v"]
        nothing = session.sql("SELECT embed_text('sentences', NULL) AS v").to_pylist()[0]["v"]
    assert rows[2]["v"] is None and nothing is None
    got = np.array([rows[0]["v"], rows[1]["v"], rows[3]["v"]])
    assert got.shape == (3, 8) and np.abs(got - expected).max() <= 1e-4
    assert np.abs(np.array(named) - expected[1]).max() <= 1e-4


# ---- a model tf2onnx cannot convert ----------------------------------------------------------------------

@pytest.mark.slow
def test_an_unconvertible_savedmodel_runs_through_tensorflow_and_show_says_why(home, built, photos_dir, monkeypatch, capsys):
    with sightql.connect(home) as session:
        with pytest.warns(UserWarning, match=r"odd@v1 could not be exported to ONNX .*run with TensorFlow"):
            version = session.registry.log_model(built["odd"], "odd", task="embedding", input={"size": 16})
        assert version.record.derived_onnx_path is None
        reason = "runs through TensorFlow: tf2onnx could not convert: TensorFlow ops with no ONNX equivalent: Lgamma"
        assert version.runtime == reason
        described = next(m for m in session.models() if m["name"] == "odd")
        assert described["versions"][0]["runtime"] == reason
        clear_cache()
        vectors = np.array([r["v"] for r in session.sql(
            "SELECT embed('odd', image) AS v FROM photos ORDER BY relative_path").to_pylist()])
        names = [r["n"] for r in session.sql("SELECT relative_path AS n FROM photos ORDER BY relative_path").to_pylist()]
        spec = version.card.input
    expected = tf_outputs(built["odd"], photo_batch(photos_dir, spec), "features")
    order = [PHOTOS.index(n.rsplit("/", 1)[-1]) for n in names]
    assert np.abs(vectors - expected[order]).max() <= 1e-4
    code, out, err = run_main(monkeypatch, capsys, ["models", "show", "odd", "-w", str(home)])
    assert code == 0, err
    assert f"runtime:     {reason}" in out


# ---- choosing, and refusing, what to call -----------------------------------------------------------------

def test_several_outputs_need_a_chosen_name_and_the_choice_is_kept(home, built, monkeypatch, capsys):
    with sightql.connect(home) as session:
        with pytest.raises(ConfigError) as refused:
            session.registry.log_model(built["two_heads"], "heads", labels=LABELS)
        message = str(refused.value)
        assert message == (f"signature 'serving_default' of {built['two_heads']} gives 2 outputs (logits (float32 [N, 3]), "
                           "probabilities (float32 [N, 3])); choose one with output_name= (CLI --output-name)")
    code, out, err = run_main(monkeypatch, capsys, ["models", "log", str(built["two_heads"]), "-n", "heads",
                                                    "--labels", ",".join(LABELS), "--output-name", "probabilities",
                                                    "--input-size", "16", "-w", str(home)])
    assert code == 0, err
    with sightql.connect(home) as session:
        version = session.registry.get_model("heads").version()
        assert version.record.options["output_name"] == "probabilities"
        assert version.card.output == "probabilities" and version.card.input.layout == "NCHW"
        image = np.full((1, 3, 16, 16), 0.5, dtype=np.float32)
        image[0, 1] = 0.9
        got = version.predictor().predict(image)
    want = tf_outputs(built["two_heads"], image, "probabilities")
    assert np.abs(got - want).max() <= 1e-4


class TwoSignatures(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image")])
    def brightness(self, image):
        return {"mean": tf.reduce_mean(image, axis=[1, 2])}

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image")])
    def contrast(self, image):
        return {"std": tf.math.reduce_std(image, axis=[1, 2])}


def test_several_signatures_without_serving_default_need_a_chosen_one(home, tmp_path):
    module = TwoSignatures()
    folder = tmp_path / "two_signatures"
    tf.saved_model.save(module, str(folder), signatures={"brightness": module.brightness, "contrast": module.contrast})
    with sightql.connect(home) as session:
        with pytest.raises(ConfigError, match=rf"^{folder} has 2 signatures \(brightness, contrast\) and none is "
                                              r"serving_default; choose one with signature= \(CLI --signature\)$"):
            session.registry.log_model(folder, "looks", task="embedding")
        with pytest.raises(ConfigError, match=r"has no signature 'sharpness'; its signatures: brightness, contrast$"):
            session.registry.log_model(folder, "looks", task="embedding", signature="sharpness")
        version = session.registry.log_model(folder, "looks", task="embedding", signature="contrast", input={"size": 8})
        assert version.record.options["signature"] == "contrast" and version.record.options["output_name"] == "std"
        image = np.random.default_rng(1).random((2, 8, 8, 3), dtype=np.float32)
        got = version.predictor().predict(image)
    assert np.abs(got - np.std(image, axis=(1, 2))).max() <= 1e-4


class ReusableWithoutSignatures(tf.Module):
    """As TF-Hub's reusable SavedModels: a traced __call__(inputs, training), no signatures at all."""

    def __init__(self):
        self.dense = tf.Variable(tf.random.stateless_normal([3, 5], seed=[7, 8]))

    @tf.function
    def __call__(self, inputs, training=False):
        pooled = tf.reduce_mean(inputs, axis=[1, 2])
        if training:
            pooled = tf.nn.dropout(pooled, 0.5)
        return tf.matmul(pooled, self.dense)


def test_a_savedmodel_without_signatures_is_called_through_its_traced_call(home, tmp_path, photos_dir):
    module = ReusableWithoutSignatures()
    spec = tf.TensorSpec([None, 20, 20, 3], tf.float32)
    module.__call__.get_concrete_function(spec, training=True)  # traced both ways, training first
    module.__call__.get_concrete_function(spec, training=False)
    folder = tmp_path / "reusable"
    tf.saved_model.save(module, str(folder))
    assert not tf.saved_model.load(str(folder)).signatures
    with sightql.connect(home) as session:
        version = session.registry.log_model(folder, "reusable", task="embedding")
        assert version.record.options == {"input_name": "inputs", "modality": "image", "output_name": "output_0",
                                          "signature": "__call__"}
        batch = photo_batch(photos_dir, version.card.input)
        assert version.card.input.height == 20 and version.record.derived_onnx_path is not None
        got = version.predictor().predict(batch)
    want = tf.saved_model.load(str(folder))(tf.constant(batch), training=False).numpy()
    assert np.abs(got - want).max() <= 1e-4


_KERAS_EXPORT = """
import sys, keras
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((24, 24, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
model.export(sys.argv[1], verbose=False)
"""


@pytest.mark.slow
def test_a_savedmodel_exported_by_keras_logs_and_answers_as_tensorflow_does(home, tmp_path, photos_dir):
    """What Keras writes (model.export; tf.keras 2's model.save(dir) has the same serving_default form)."""
    folder = tmp_path / "keras_export"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", _KERAS_EXPORT, str(folder)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with sightql.connect(home) as session:
        version = session.registry.log_model(folder, "keras_made", labels=LABELS)
        assert version.card.output == "probabilities" and version.record.derived_onnx_path is not None
        assert (version.card.input.height, version.card.input.layout) == (24, "NHWC")
        assert version.record.options["input_name"] == "keras_tensor"
        batch = photo_batch(photos_dir, version.card.input)
        got = version.predictor().predict(batch)
    assert np.abs(got - tf_outputs(folder, batch, "output_0")).max() <= 1e-4


_TF_KERAS_2_SAVE = """
import sys, tensorflow as tf, tf_keras as keras
tf.random.set_seed(0)
model = keras.Sequential([keras.Input((24, 24, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.BatchNormalization(), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(3, activation="softmax")])
model.save(sys.argv[1], save_format="tf")
"""


@pytest.mark.slow
def test_a_keras_2_era_savedmodel_logs_and_answers_as_tensorflow_does(home, tmp_path, photos_dir):
    """What tf.keras 2 wrote with model.save(dir): a SavedModel with keras_metadata.pb and Keras 2's
    serving_default (input named after the Input layer, output after the last layer)."""
    if importlib.util.find_spec("tf_keras") is None:
        pytest.skip("tf_keras (Keras 2 for TensorFlow, a dev dependency) is not installed")
    folder = tmp_path / "keras2_savedmodel"
    # As a Keras 2 user's process: no KERAS_BACKEND=torch (SightQL sets it in this one; with it the
    # Keras 3 that TensorFlow loads imports torch after TensorFlow, the crash models/tensorflow/backend.py avoids).
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"} | {"TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", _TF_KERAS_2_SAVE, str(folder)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (folder / "keras_metadata.pb").is_file()
    with sightql.connect(home) as session:
        version = session.registry.log_model(folder, "keras2_made", labels=LABELS)
        assert version.framework == "tensorflow" and version.record.derived_onnx_path is not None
        assert version.card.output == "probabilities" and (version.card.input.height, version.card.input.layout) == (24, "NHWC")
        batch = photo_batch(photos_dir, version.card.input)
        got = version.predictor().predict(batch)
        output = version.record.options["output_name"]
    assert np.abs(got - tf_outputs(folder, batch, output)).max() <= 1e-4


CORRUPT_ZIP = b"PK\x03\x04" + b"\x00" * 40 + b"this is not really a zip archive"


@pytest.mark.parametrize("case, expected", [
    ("corrupt_zip", r"^{path} is not a readable zip archive \(.+\); download or pack it again$"),
    ("no_savedmodel", r"^{path} is a folder without modules.json, saved_model.pb, a CLIP config.json or "
                      r"zero_shot.json; give a model file, a TensorFlow SavedModel folder, a sentence-transformers "
                      r"folder or a zero-shot dual encoder folder$"),
    ("not_image", r"^signature 'serving_default' of {path} takes features \(float32 \[N, 10\]\), which is neither "
                  r"images .* nor a batch of strings; choose another signature with signature= \(CLI --signature\)$"),
    ("zip_without_model", r"^{path} holds no TensorFlow SavedModel \(no saved_model.pb in it\); pack the folder .*$"),
])
def test_a_bad_model_is_one_sentence_in_python_and_the_cli(home, built, tmp_path, monkeypatch, capsys, case, expected):
    if case == "corrupt_zip":
        path = tmp_path / "use_lite.zip"
        path.write_bytes(CORRUPT_ZIP)
    elif case == "no_savedmodel":
        path = tmp_path / "empty_model"
        path.mkdir()
        (path / "README.txt").write_text("weights to follow")
    elif case == "zip_without_model":
        path = tmp_path / "notes.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes/readme.txt", "no model here")
    else:
        path = built["not_image"]
    import re

    pattern = expected.format(path=re.escape(str(path)))
    with sightql.connect(home) as session:
        with pytest.raises(ConfigError, match=pattern):
            session.registry.log_model(path, "bad", labels=LABELS)
        assert "bad" not in session.registry.model_names()
    code, out, err = run_main(monkeypatch, capsys, ["models", "log", str(path), "-n", "bad", "-l", "a,b", "-w", str(home)])
    assert code == 2 and out == "" and "Traceback" not in err and err.count("\n") == 1
    assert re.match("^error: " + pattern[1:], err.strip()), err


def test_a_folder_without_a_savedmodel_named_tensorflow_is_one_sentence(home, tmp_path):
    folder = tmp_path / "nothing"
    folder.mkdir()
    with sightql.connect(home) as session, pytest.raises(ConfigError, match=r"holds no TensorFlow SavedModel"):
        session.registry.log_model(folder, "bad", labels=LABELS, framework="tensorflow")


def test_messages_about_a_staged_model_name_the_stage_path(home, tmp_path):
    (tmp_path / "broken.zip").write_bytes(CORRUPT_ZIP)
    with sightql.connect(home) as session:
        session.stage("models").put(tmp_path / "broken.zip", "bad")
        with pytest.raises(ConfigError, match=r"^@models/bad/broken.zip is not a readable zip archive"):
            session.registry.log_model("@models/bad/broken.zip", "bad", labels=LABELS)


def test_a_signature_reading_files_needs_trust(home, built):
    with sightql.connect(home) as session:
        with pytest.raises(UnsafeModelError, match=r"runs TensorFlow ops that read or write files \(ReadFile\); pass trust=True"):
            session.registry.log_model(built["reads_file"], "reader", task="embedding")


def test_without_tensorflow_the_fix_is_named(home, built, monkeypatch):
    from sightql.models.tensorflow.backend import import_tensorflow

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now fails as if not installed
    with pytest.raises(MissingDependencyError, match=r"^tensorflow is not installed; run: pip install 'sightql\[tensorflow\]'$"):
        import_tensorflow()
    with sightql.connect(home) as session, pytest.raises(MissingDependencyError, match=r"sightql\[tensorflow\]"):
        session.registry.log_model(built["classifier"], "needs_tf", labels=LABELS)


# ---- archives that try to write outside the folder --------------------------------------------------------

def _evil_zip(path: Path, classifier: Path, kind: str) -> Path:
    zip_folder(classifier, path)
    with zipfile.ZipFile(path, "a") as archive:
        if kind == "dotdot":
            archive.writestr("../escaped.txt", "outside")
        else:  # a symbolic link entry, as `zip --symlinks` stores one
            link = zipfile.ZipInfo("variables/escaped")
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(link, "/etc/passwd")
    return path


def _evil_tar(path: Path, classifier: Path, kind: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted(classifier.rglob("*")):
            tar.add(file, file.relative_to(classifier).as_posix(), recursive=False)
        entry = tarfile.TarInfo("/tmp/escaped.txt" if kind == "absolute" else "variables/link")
        if kind == "symlink":
            entry.type, entry.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            entry.type, entry.linkname = tarfile.LNKTYPE, "/etc/passwd"
        data = b"outside" if kind == "absolute" else b""
        entry.size = len(data)
        tar.addfile(entry, io.BytesIO(data))
    return path


@pytest.mark.parametrize("kind, why", [
    ("dotdot", "would be written outside the folder it is unpacked into"),
    ("zip_symlink", "is a symbolic link"),
    ("absolute", "would be written outside the folder it is unpacked into"),
    ("symlink", "is a symbolic link"),
    ("hardlink", "is a hard link"),
])
def test_an_archive_escaping_its_folder_is_refused(home, built, tmp_path, kind, why):
    if kind in ("dotdot", "zip_symlink"):
        archive = _evil_zip(tmp_path / "evil.zip", built["classifier"], kind)
    else:
        archive = _evil_tar(tmp_path / "evil.tar.gz", built["classifier"], kind)
    with sightql.connect(home) as session:
        with pytest.raises(ConfigError, match=f"^{archive} has an entry .* {why}"):
            session.registry.log_model(archive, "evil", labels=LABELS)
        assert "evil" not in session.registry.model_names()
        leftovers = list((home / "models" / "registry").glob("evil*"))
    assert leftovers == [] and not (tmp_path / "escaped.txt").exists()


def test_an_archive_over_the_model_limit_is_refused_while_unpacking(built, tmp_path):
    from sightql.models.tensorflow.archive import extract

    archive = zip_folder(built["classifier"], tmp_path / "clf.zip")
    with pytest.raises(ConfigError, match=r"unpacks to more than the 1,000-byte model limit"):
        extract(archive, tmp_path / "out", 1000)


_ONE_PROCESS = """
import sys, sightql
from tests.registry_models import tiny_classifier
with sightql.connect(sys.argv[1]) as s:
    runtimes = [s.registry.log_model(sys.argv[2], "clf", labels=["a", "b", "c"]).runtime]  # TensorFlow loads first
    from sightql.models.keras.backend import import_keras
    keras = import_keras()
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    model.save(sys.argv[3])
    runtimes.append(s.registry.log_model(sys.argv[3], "k", labels=["x", "y"]).runtime)
    runtimes.append(s.registry.log_model(tiny_classifier(2), "t", labels=["x", "y"], input={"size": 16}).runtime)
print(runtimes)
"""


@pytest.mark.slow
def test_one_process_logs_a_savedmodel_then_keras_and_torch_models(built, tmp_path):
    """TensorFlow imports Keras and clashes with triton (torch.export): loaded first, neither may break the others."""
    done = subprocess.run([sys.executable, "-c", _ONE_PROCESS, str(tmp_path / "wh"), str(built["classifier"]),
                           str(tmp_path / "k.keras")], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str([
        f"ONNX Runtime (converted from {name} at log time and checked against it)" for name in ("TensorFlow", "Keras", "PyTorch")
    ])


def test_importing_sightql_and_the_tensorflow_adapter_loads_no_tensorflow():
    modules = ("sightql", "sightql.registry", "sightql.cli.models", "sightql.models.tensorflow.runtime",
               "sightql.models.tensorflow.export", "sightql.models.tensorflow.archive")
    code = f"import sys, {', '.join(modules)}; print(sorted(m for m in ('tensorflow', 'tf2onnx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
