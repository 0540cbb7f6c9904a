"""The same images and model through Daft or Ray Data: run by batch_predict.py --compare-python.

    python _frameworks.py daft|ray BENCH.parquet MODEL_DIR WORKERS

Each reads the Parquet export of the benchmark table (relative_path, image), and runs a class UDF
that loads SightQL's own ONNX adapter once per worker and preprocesses with SightQL's card-driven
code, batch 32, one worker per core: the same model and the same preprocessing as session.predict.
The UDF decodes its batch then runs the model (the way such a UDF is usually written); the
frameworks parallelise across workers. Prints one JSON line: img/s and the framework's version.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def load(model_dir: str):
    from sightql.models.card import ModelCard
    from sightql.models.onnx.runtime import OnnxPredictor

    card = ModelCard.from_json((Path(model_dir) / "card.json").read_text())
    return OnnxPredictor(Path(model_dir) / "model.onnx", card)


def classify(model, blobs: list) -> tuple[list, list]:
    from sightql.images.preprocess import preprocess

    probabilities = model.predict(np.stack([preprocess(b, model.card.input) for b in blobs]))
    best = probabilities.argmax(axis=1)
    return [model.card.labels[i] for i in best], [float(p[i]) for p, i in zip(probabilities, best)]


def run_daft(parquet: str, model_dir: str, workers: int) -> dict:
    import daft

    @daft.udf(return_dtype=daft.DataType.string(), batch_size=32, concurrency=workers)
    class Classify:
        def __init__(self) -> None:
            self.model = load(model_dir)

        def __call__(self, images):
            return classify(self.model, images.to_pylist())[0]

    start = time.perf_counter()
    df = daft.read_parquet(parquet)
    out = df.with_column("label", Classify(df["image"])).select("relative_path", "label").to_arrow()
    seconds = time.perf_counter() - start
    return {"n": out.num_rows, "seconds": seconds, "img_per_s": out.num_rows / seconds, "version": f"daft {daft.__version__}"}


def run_ray(parquet: str, model_dir: str, workers: int) -> dict:
    import ray

    # One logical CPU more than the map actors take, for the Parquet read tasks (else they never get scheduled).
    ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False)

    class Classify:
        def __init__(self) -> None:
            self.model = load(model_dir)

        def __call__(self, batch: dict) -> dict:
            labels, scores = classify(self.model, list(batch["image"]))
            return {"relative_path": batch["relative_path"], "label": np.array(labels), "score": np.array(scores)}

    start = time.perf_counter()
    ds = ray.data.read_parquet(parquet).map_batches(Classify, batch_size=32, concurrency=workers, num_cpus=1,
                                                     batch_format="numpy")
    n = ds.materialize().count()
    seconds = time.perf_counter() - start
    ray.shutdown()
    return {"n": n, "seconds": seconds, "img_per_s": n / seconds, "version": f"ray {ray.__version__}"}


if __name__ == "__main__":
    framework, parquet, model_dir, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    result = (run_daft if framework == "daft" else run_ray)(parquet, model_dir, workers)
    print(json.dumps(result))
