"""`sightql models ...` end to end in subprocesses, on a real warehouse."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.registry_models import defect_cnn, keras_outputs, photo_batch, tiny_classifier, write_onnx

CLI = [sys.executable, "-m", "sightql"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True)


@pytest.mark.slow
def test_models_log_ls_show_alias_rm(warehouse, photos_dir, tmp_path):
    w = ["-w", str(warehouse)]
    onnx = write_onnx(tiny_classifier(3, favour=2), tmp_path / "defects.onnx")
    labels = tmp_path / "labels.txt"
    labels.write_text("crazing\ninclusion\npatches\n")
    out = run("models", "log", str(onnx), "--name", "defects", "--labels", "crazing,inclusion,patches",
              "--input-size", "32", "--rescale", "1/255", "--metric", "accuracy=0.9", "--description", "first", *w)
    assert out.returncode == 0, out.stderr
    assert re.match(r"logged defects@v1 \(onnx, classification, sha256 [0-9a-f]{12}\)", out.stdout)
    assert run("models", "log", str(onnx), "--name", "defects", "--labels", f"@{labels}", *w).returncode == 0
    assert "defects@prod -> v1" in run("models", "alias", "defects", "prod", "v1", *w).stdout
    listing = run("models", "ls", *w).stdout
    assert "defects" in listing and "prod=v1" in listing
    card = run("models", "show", "defects@prod", *w).stdout
    assert "model:       defects@v1" in card and "framework:   onnx" in card
    assert "labels:      3 (crazing, inclusion, patches)" in card and "metrics:     accuracy=0.9" in card
    assert "3x32x32 NCHW, scale 0.00392157" in card and "aliases:     prod" in card
    assert re.search(r"sha256:      [0-9a-f]{64}", card)
    classified = run("classify", str(photos_dir / "coffee.jpg"), "--model", "defects@prod", "-k", "1", *w)
    assert classified.returncode == 0 and re.search(r"coffee.jpg: patches 1\.000", classified.stdout), classified.stderr
    refused = run("models", "rm", "defects@v1", *w)
    assert refused.returncode == 2 and refused.stderr.startswith("error: alias prod points at defects@v1")
    assert "removed defects@v2" in run("models", "rm", "defects@v2", *w).stdout
    assert "removed defects" in run("models", "rm", "defects", *w).stdout
    assert "defects" not in run("models", "ls", *w).stdout


def test_models_mistakes_are_one_sentence(warehouse, tmp_path):
    w = ["-w", str(warehouse)]
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(b"\x80\x04K\x01.")
    for args, sentence in [
        (["models", "log", str(pickled), "--name", "x", "--labels", "a"], "pass trust=True (CLI: --trust)"),
        (["models", "show", "nothing"], "no model named 'nothing'"),
        (["models", "log", str(tmp_path / "missing.onnx"), "--name", "x", "--labels", "a"], "does not exist"),
        (["models", "log", str(pickled), "--name", "x", "--metric", "acc"], "not name=number"),
    ]:
        result = run(*args, *w)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert sentence in result.stderr and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


@pytest.mark.slow
def test_models_log_reads_an_index_to_label_file_and_a_refusal_names_the_file_and_leaves_nothing(warehouse, tmp_path):
    w = ["-w", str(warehouse)]
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"weights": tmp_path}))  # a Path inside: only a full unpickler reads it
    refused = run("models", "log", str(evil), "--name", "evil", "--labels", "a", "--arch", "resnet18", *w)
    assert refused.returncode == 2 and refused.stderr.startswith("error: evil.pt is a pickle"), refused.stderr
    assert not (warehouse / "models/registry/evil").exists()

    onnx = write_onnx(tiny_classifier(3), tmp_path / "fish.onnx")
    labels = tmp_path / "imagenet1000_clsidx_to_labels.txt"
    labels.write_text("{0: 'tench, Tinca tinca',\n 1: 'goldfish, Carassius auratus',\n 2: 'great white shark'}")
    logged = run("models", "log", str(onnx), "--name", "fish", "--labels", f"@{labels}", *w)
    assert logged.returncode == 0, logged.stderr
    card = run("models", "show", "fish", *w).stdout
    assert "labels:      3 (tench, Tinca tinca, goldfish, Carassius auratus, great white shark)" in card


@pytest.mark.slow
def test_models_log_a_keras_h5_with_the_documented_one_liner(warehouse, photos_dir, tmp_path):
    from sightql.models.keras.backend import import_keras

    model = defect_cnn(import_keras())
    model.save(tmp_path / "defects.h5")
    w = ["-w", str(warehouse)]
    out = subprocess.run(
        [*CLI, "models", "log", "defects.h5", "--name", "defects", "--labels",
         "crazing,inclusion,patches,pitted,rolled,scratches", "--input-size", "200", "--rescale", "1/255", *w],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert re.match(r"logged defects@v1 \(keras, classification, sha256 [0-9a-f]{12}\)", out.stdout)
    card = run("models", "show", "defects", *w).stdout
    assert "framework:   keras" in card and "(output: probabilities)" in card
    assert "3x200x200 NHWC, scale 0.00392157, mean [0.0, 0.0, 0.0], std [1.0, 1.0, 1.0], resize squash" in card
    classified = run("classify", str(photos_dir / "coffee.jpg"), "--model", "defects", "-k", "1", *w)
    assert classified.returncode == 0, classified.stderr

    import sightql

    with sightql.connect(warehouse, read_only=True) as session:
        spec = session.registry.resolve("defects").card.input
    probabilities = keras_outputs(model, photo_batch(photos_dir, spec))[2]  # PHOTOS[2] is coffee.jpg
    labels = "crazing,inclusion,patches,pitted,rolled,scratches".split(",")
    best = int(np.argmax(probabilities))
    assert re.search(rf"coffee.jpg: {labels[best]} {probabilities[best]:.3f}", classified.stdout), classified.stdout
