"""Daft or Ray Data as their own docs write image classification: run by batch_predict.py --peers.

    python _peers_native.py daft|ray IMAGE_FOLDER MODEL.onnx CARD.json WORKERS

Runs in the peer venv (/tmp/bench-venv; see batch_predict.py) and imports nothing from SightQL:

* Daft: ``daft.from_glob_path`` over the folder's JPEGs, ``download`` the bytes, ``decode_image``
  (RGB), ``resize`` to the model's input (224x224), and a ``@daft.cls`` class (one instance per
  core, ``max_concurrency=WORKERS``) whose ``@daft.method.batch`` method (batch 32) normalises with
  the card's scale/mean/std and runs the fp32 ONNX model in ONNX Runtime.
* Ray Data: ``ray.data.read_images(folder, size=(224, 224), mode="RGB")`` and ``map_batches`` with
  a callable class (actors, ``concurrency=WORKERS``, ``batch_size=32``) that normalises and runs
  the same ONNX model.

Both resize the whole image to 224x224 (no aspect-preserving resize and centre crop, which SightQL's
card asks for): that is what the frameworks' docs show. Each instance's ONNX Runtime session runs
one intra-op thread, since there is one instance per core. The clock starts before the pipeline is
built and stops when every row's label is materialised; it includes the workers' start and their
model load. Prints one JSON line: n, seconds, img/s and the framework's version (or an error).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np


class Normalised:
    """The card's normalisation, ``(pixel * scale - mean) / std``, NHWC uint8 -> NCHW float32."""

    def __init__(self, card_path: str) -> None:
        card = json.loads(Path(card_path).read_text())
        spec = card["input"]
        self.labels = card["labels"]
        self.size = (int(spec["width"]), int(spec["height"]))
        self.scale = np.float32(spec.get("scale", 1 / 255))
        self.mean = np.asarray(spec["mean"], np.float32)
        self.std = np.asarray(spec["std"], np.float32)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = (images.astype(np.float32) * self.scale - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def onnx_session(model_path: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one instance per core
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


def run_daft(folder: str, model_path: str, card_path: str, workers: int) -> dict:
    import daft
    from daft import col
    from daft.functions import decode_image, download, resize

    normalise = Normalised(card_path)
    width, height = normalise.size

    @daft.cls(max_concurrency=workers)
    class Classifier:
        def __init__(self, path: str) -> None:
            self.session = onnx_session(path)
            self.input = self.session.get_inputs()[0].name

        @daft.method.batch(return_dtype=daft.DataType.string(), batch_size=32)
        def __call__(self, images: daft.Series) -> list:
            x = normalise(np.stack(images.to_pylist()))
            logits = self.session.run(None, {self.input: x})[0]
            return [normalise.labels[i] for i in logits.argmax(axis=1)]

    start = time.perf_counter()
    classifier = Classifier(model_path)
    df = daft.from_glob_path(str(Path(folder) / "*.jpg"))
    df = df.with_column("image", resize(decode_image(download(col("path")), mode="RGB"), width, height))
    df = df.with_column("label", classifier(col("image")))
    out = df.select("path", "label").to_arrow()
    seconds = time.perf_counter() - start
    return {"n": out.num_rows, "seconds": seconds, "img_per_s": out.num_rows / seconds,
            "labelled": sum(1 for v in out.column("label").to_pylist() if v), "version": f"daft {daft.__version__}"}


def run_ray(folder: str, model_path: str, card_path: str, workers: int) -> dict:
    import ray

    normalise = Normalised(card_path)
    # One logical CPU more than the actors take, for read_images' read tasks: with ray.init()'s
    # default (one per core) and one actor per core, the reads are never scheduled and the run hangs.
    ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False)

    class Classifier:
        def __init__(self) -> None:
            self.session = onnx_session(model_path)
            self.input = self.session.get_inputs()[0].name

        def __call__(self, batch: dict) -> dict:
            logits = self.session.run(None, {self.input: normalise(batch["image"])})[0]
            return {"label": np.array([normalise.labels[i] for i in logits.argmax(axis=1)])}

    start = time.perf_counter()
    ds = ray.data.read_images(folder, size=normalise.size[::-1], mode="RGB")  # size is (height, width)
    ds = ds.map_batches(Classifier, concurrency=workers, batch_size=32)
    n = ds.materialize().count()
    seconds = time.perf_counter() - start
    ray.shutdown()
    return {"n": n, "seconds": seconds, "img_per_s": n / seconds, "version": f"ray {ray.__version__}"}


if __name__ == "__main__":
    framework, folder, model_path, card_path, workers = sys.argv[1:6]
    try:
        result = (run_daft if framework == "daft" else run_ray)(folder, model_path, card_path, int(workers))
    except Exception as exc:  # reported as a row of the table, not a crash of the whole benchmark
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    print(json.dumps(result), flush=True)
