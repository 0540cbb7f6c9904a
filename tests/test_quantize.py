"""int8 versions: quantize a small registered classifier end to end (calibrate on a table, gate, refuse below the
threshold, force, run from SQL), and the card's runtime honoured by SQL, predict and the HTTP API."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sightql
from sightql.errors import ConfigError, QuantizeRefused
from sightql.images.preprocess import preprocess
from sightql.models.onnx.runtime import OnnxPredictor

COLOURS = ("red", "green", "blue")
SIZE = 32


def colour_photo(label: str, rng: np.random.Generator) -> bytes:
    """A noisy, textured JPEG whose dominant channel is ``label``'s (so a channel-mean model has clear margins)."""
    pixels = rng.integers(0, 90, (48, 64, 3)).astype(np.int16)
    channel = COLOURS.index(label)
    pixels[..., channel] += rng.integers(90, 165)
    pixels += (np.sin(np.arange(64) / rng.uniform(2, 6)) * 20).astype(np.int16)[None, :, None]
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def channel_mean_classifier(path: Path, outlier: float = 0.0) -> Path:
    """An ONNX classifier (1x1 conv, ReLU, average pool, Gemm) whose logits follow the channel means.

    ``outlier``: a fourth hidden channel that is that constant everywhere and unused by the classifier. A large one
    stretches the activation range, so uint8 steps swallow the three informative channels: int8 then loses the labels.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    conv_w = np.zeros((4, 3, 1, 1), np.float32)
    conv_w[0, 0] = conv_w[1, 1] = conv_w[2, 2] = 1.0
    conv_b = np.array([1.0, 1.0, 1.0, outlier], np.float32)  # inputs are in [-1, 1]: +1 keeps them through the ReLU
    gemm_w = np.zeros((3, 4), np.float32)
    gemm_w[:3, :3] = 8.0 * np.eye(3)
    gemm_b = np.zeros(3, np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "cw", "cb"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "gw", "gb"], ["logits"], name="head", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "colours",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(a, n) for a, n in ((conv_w, "cw"), (conv_b, "cb"), (gemm_w, "gw"), (gemm_b, "gb"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


INPUT = {"size": SIZE, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """A warehouse with table 'swatches' (120 labelled colour photos) and two models: 'colours' (int8-friendly)
    and 'stretched' (an activation outlier that int8 cannot survive)."""
    folder = tmp_path_factory.mktemp("quantize") / "warehouse"
    rng = np.random.default_rng(0)
    labels = [COLOURS[i % 3] for i in range(120)]
    images = [colour_photo(label, rng) for label in labels]
    with sightql.connect(folder) as s:
        s.sql("CREATE TABLE swatches (id INTEGER PRIMARY KEY, image BLOB, label VARCHAR)")
        s.con.executemany("INSERT INTO swatches VALUES (?, ?, ?)", [[i, b, l] for i, (b, l) in enumerate(zip(images, labels))])
        s.registry.log_model(channel_mean_classifier(folder.parent / "colours.onnx"), "colours", labels=list(COLOURS),
                             input=INPUT, output="logits")
        s.registry.log_model(channel_mean_classifier(folder.parent / "stretched.onnx", outlier=1000.0), "stretched",
                             labels=list(COLOURS), input=INPUT, output="logits")
    return folder


@pytest.fixture(scope="module")
def quantized(warehouse) -> str:
    with sightql.connect(warehouse) as s:
        made = s.registry.quantize("colours", calibrate="swatches", n=40, label="label", held_out=1000)
        return made.ref


def test_quantize_makes_a_gated_int8_version_with_its_figures_stored(warehouse, quantized):
    assert quantized == "colours@v2"
    with sightql.connect(warehouse) as s:
        version = s.registry.get_model("colours").version("v2")
        assert version.card.runtime == "int8"
        assert version.framework == "onnx"
        assert version.runtime == "ONNX Runtime, int8 (quantized from colours@v1)"
        figures = version.metrics
        # 120 distinct images: 40 calibrate, the other 80 are the gate's held-out images
        assert figures["calibration_images"] == 40 and figures["held_out_images"] == 80
        assert figures["int8_top1_agreement"] >= 0.98
        assert figures["fp32_accuracy"] == 1.0 and figures["labelled_held_out_images"] == 80
        assert abs(figures["int8_accuracy"] - figures["fp32_accuracy"]) <= 0.02
        assert figures["int8_speedup_batch32"] > 0
        made = version.record.options["provenance"]
        assert made["quantized_from"] == "colours@v1" and made["calibrated_on"] == "swatches"
        assert "GPTQ" in made["weights"] and made["kept_fp32"] == "head"
        # the artifact is an int8 QDQ model: integer weights, quantize/dequantize pairs
        import onnx

        model = onnx.load(str(version.artifact_path))
        assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
        assert any(i.data_type == onnx.TensorProto.INT8 for i in model.graph.initializer)


def test_sql_runs_the_int8_version_by_reference_and_the_fp32_one_stays(warehouse, quantized):
    with sightql.connect(warehouse) as s:
        rows = s.sql("SELECT id, label, image FROM swatches ORDER BY id LIMIT 30").to_pylist()
        int8_scores = s.sql("SELECT classify('colours@v2', image).score AS v FROM swatches ORDER BY id LIMIT 30").column("v").to_pylist()
        fp32_scores = s.sql("SELECT classify('colours@v1', image).score AS v FROM swatches ORDER BY id LIMIT 30").column("v").to_pylist()
        int8_labels = s.sql("SELECT classify('colours@v2', image).label AS v FROM swatches ORDER BY id LIMIT 30").column("v").to_pylist()
        v2 = s.registry.get_model("colours").version("v2")
        card = v2.card
    direct = OnnxPredictor(v2.artifact_path, card).predict(np.stack([preprocess(r["image"], card.input) for r in rows]))
    assert int8_scores == pytest.approx(direct.max(axis=1).tolist(), abs=1e-6)  # SQL ran exactly the int8 file
    assert int8_scores != pytest.approx(fp32_scores, abs=1e-6)  # ... which is not the fp32 model
    assert int8_labels == [r["label"] for r in rows]


def test_below_the_threshold_is_refused_with_the_figures_and_force_keeps_it(warehouse):
    with sightql.connect(warehouse) as s:
        with pytest.raises(QuantizeRefused) as refused:
            s.registry.quantize("stretched", calibrate="swatches", n=40, label="label")
        message = str(refused.value)
        assert "stretched@v1 in int8 was refused: top-1 agreement" in message and "below the 98% threshold" in message
        assert "--force" in message
        assert s.registry.get_model("stretched").default_version is None
        assert [v.version for v in s.registry.get_model("stretched").versions()] == ["v1"]  # nothing registered
        agreement = float(message.split("top-1 agreement ")[1].split("%")[0]) / 100
        assert agreement < 0.98

        forced = s.registry.quantize("stretched", calibrate="swatches", n=40, label="label", force=True)
        assert forced.ref == "stretched@v2" and forced.card.runtime == "int8"
        assert forced.metrics["int8_top1_agreement"] == pytest.approx(agreement, abs=1e-9)
        assert forced.record.options["provenance"]["forced"] is True
        assert "kept with force" in forced.description
        # a lenient threshold takes it without force
        lenient = s.registry.quantize("stretched@v1", calibrate="swatches", n=40, threshold=0.0)
        assert lenient.ref == "stretched@v3" and "fp32_accuracy" not in lenient.metrics  # no label column given


def test_quantize_mistakes_are_one_sentence(warehouse, quantized):
    with sightql.connect(warehouse) as s:
        with pytest.raises(ConfigError, match="needs images like the ones it will see"):
            s.registry.quantize("colours@v1")
        with pytest.raises(ConfigError, match="is already int8"):
            s.registry.quantize(quantized, calibrate="swatches")
        with pytest.raises(ConfigError, match="threshold 1.5 is not a fraction"):
            s.registry.quantize("colours@v1", calibrate="swatches", threshold=1.5)
        with pytest.raises(ConfigError, match="at least 10 calibration and 20 held-out"):
            s.registry.quantize("colours@v1", calibrate="swatches", held_out=5)
        with pytest.raises(ConfigError, match="calibrated on the bundled photos"):
            s.registry.quantize("imagenet", calibrate="swatches")
        with pytest.raises(sightql.errors.TableError):
            s.registry.quantize("colours@v1", calibrate="no_such_table")


def test_predict_writes_back_the_int8_answers_and_names_the_version(warehouse, quantized):
    with sightql.connect(warehouse) as s:
        s.sql("CREATE OR REPLACE TABLE to_label AS SELECT id, image FROM swatches WHERE id < 24")
        s.registry.get_model("colours").set_alias("prod", "v2")
        report = s.predict("colours@prod", "to_label", key="id")
        assert report.predicted == 24
        got = s.sql("SELECT predicted_label AS label, confidence AS score, model_version FROM to_label ORDER BY id").to_pylist()
        want = s.sql("SELECT classify('colours@v2', image) AS c FROM to_label ORDER BY id").column("c").to_pylist()
        s.registry.get_model("colours").remove_alias("prod")
    assert {row["model_version"] for row in got} == {"colours@v2"}
    assert [r["label"] for r in got] == [w["label"] for w in want]
    assert [r["score"] for r in got] == pytest.approx([w["score"] for w in want], abs=1e-6)


def test_the_http_api_answers_with_the_int8_version(warehouse, quantized):
    from fastapi.testclient import TestClient

    from sightql.api import ApiLimits, create_app

    with sightql.connect(warehouse) as s:
        image = s.sql("SELECT image FROM swatches WHERE id = 7").column("image")[0].as_py()
        sql_top = s.sql("SELECT classify_topk('colours@v2', ?, 3) AS top", [image]).to_pylist()[0]["top"]
    with TestClient(create_app(warehouse, "t0ken", ApiLimits())) as client:
        response = client.post("/v1/models/colours@v2/predict?k=3", headers={"Authorization": "Bearer t0ken"},
                               files=[("file", ("swatch.jpg", image, "image/jpeg"))])
        listed = client.get("/v1/models", headers={"Authorization": "Bearer t0ken"}).json()
    assert response.status_code == 200, response.text
    body = response.json()
    top = body["predictions"][0]["top"] if "predictions" in body else body["top"]
    assert [t["label"] for t in top] == [t["label"] for t in sql_top]
    assert [t["score"] for t in top] == pytest.approx([t["score"] for t in sql_top], abs=1e-6)
    runtimes = json.dumps(listed)
    assert "int8 (quantized from colours@v1)" in runtimes


def test_the_cli_quantizes_and_shows_the_gate(warehouse, quantized, tmp_path):
    copy = tmp_path / "warehouse"
    shutil.copytree(warehouse, copy)
    env = {**os.environ, "SIGHTQL_HOME": str(copy)}
    run = lambda *args: subprocess.run([sys.executable, "-m", "sightql", *args], capture_output=True, text=True, env=env)  # noqa: E731
    made = run("models", "quantize", "colours@v1", "--calibrate", "swatches", "--n", "40", "--label", "label")
    assert made.returncode == 0, made.stderr
    assert "logged colours@v3 (int8 of colours@v1): top-1 agreement" in made.stdout
    shown = run("models", "show", "colours@v3")
    assert "runtime:     ONNX Runtime, int8 (quantized from colours@v1)" in shown.stdout
    assert "int8_top1_agreement=" in shown.stdout and "fp32_accuracy=1" in shown.stdout
    refused = run("models", "quantize", "stretched@v1", "--calibrate", "swatches", "--n", "40")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "was refused: top-1 agreement" in refused.stderr
    wrong = run("models", "log", str(warehouse.parent / "colours.onnx"), "--name", "x", "--labels", "a,b,c", "--runtime", "int4")
    assert wrong.returncode == 2 and "runtime='int4' is not valid" in wrong.stderr


# ---- the built-in's int8 variant ------------------------------------------------------------------
@pytest.mark.slow
def test_imagenet_int8_is_built_gated_and_used_from_sql_and_the_cli(tmp_path, model_cache, photos_dir):
    from sightql.models.builtin import imagenet_int8_gate

    home = tmp_path / "warehouse"
    shutil.copytree(model_cache, home / "models", copy_function=os.link)
    photos = [(photos_dir / name).read_bytes() for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg", "astronaut.jpg")]
    with sightql.connect(home) as s:
        assert imagenet_int8_gate(home / "models") is None  # not built until it is first used
        query = "SELECT classify(?, image) AS c FROM (SELECT unnest(?::BLOB[]) AS image)"
        int8 = s.sql(query, ["imagenet@int8", photos]).column("c").to_pylist()
        fp32 = s.sql(query, ["imagenet", photos]).column("c").to_pylist()
        version = s.sql("SELECT classify_topk('imagenet@int8', ?, 1) AS t", [photos[0]]).column("t").to_pylist()
    gate = imagenet_int8_gate(home / "models")
    assert gate["int8_top1_agreement"] >= 0.98 and gate["held_out_images"] == 500 and not gate["forced"]
    assert gate["int8_top5_contains_fp32_top1"] >= 0.995
    assert "GPTQ" in gate["weights"]
    assert [r["label"] for r in int8] == [r["label"] for r in fp32]  # clear photos keep their labels
    assert [r["score"] for r in int8] != pytest.approx([r["score"] for r in fp32], abs=1e-6)  # ... from another model
    assert version[0][0]["label"] == int8[0]["label"]
    shown = subprocess.run([sys.executable, "-m", "sightql", "models", "show", "imagenet@int8", "-w", str(home)],
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "runtime:     ONNX Runtime, int8" in shown.stdout and "top-1 agreement 9" in shown.stdout
