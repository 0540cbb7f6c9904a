"""int8 against fp32: model-only speed, the built-in variant's agreement, and a fine-tuned model's accuracy.

    python benchmarks/quantize.py                         # all three parts (about 10-15 minutes on 2 cores)
    python benchmarks/quantize.py --parts speed builtin   # the built-in only
    python benchmarks/quantize.py --parts textile --epochs 4 --image-size 128

Prints, from one run on one machine:
  speed    model-only img/s of the built-in classifier, fp32 and int8 (imagenet@int8), batch 32, ONNX Runtime
           with SightQL's settings, in turns (fp32, int8, fp32, ...) for --rounds rounds; best and median of each
  builtin  imagenet@int8 (built here, calibrated on 300 crops of the bundled photos, seed 1, gated on 500 others,
           seed 3) against fp32 on 1,000 further held-out crops (seed 2: none is a calibration or gate image): top-1 agreement,
           fp32's top-1 within int8's top-5; and, for information, the same on 500 of the real textile JPEGs, where
           ImageNet's answer is nearly uniform (median top-1 probability 0.04), so a label flips at a touch
  textile  a model fine-tuned on 70% of the 2,000 textile JPEGs (session.train, --epochs, --image-size), quantized
           with registry.quantize on 300 of its training images, both scored on the other 30%: accuracy points lost
End-to-end SQL throughput of the int8 variant against fp32 and the peers: benchmarks/batch_predict.py --peers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, print_table  # noqa: E402

import sightql  # noqa: E402


def speed(models_dir: Path, rounds: int) -> list[tuple[str, str]]:
    from sightql.models.builtin import cached_imagenet_int8, cached_imagenet_onnx
    from sightql.models.onnx.runtime import OnnxPredictor
    from sightql.models.quantized import preprocessed
    from sightql.models.sample_photos import generated_crops

    fp32_path, card = cached_imagenet_onnx(models_dir)
    int8_path, int8_card = cached_imagenet_int8(models_dir)
    batch, _ = preprocessed(generated_crops(32, seed=3), card)
    predictors = {"fp32": OnnxPredictor(fp32_path, card), "int8": OnnxPredictor(int8_path, int8_card)}
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for predictor in predictors.values():
        predictor.predict(batch)
    for _ in range(rounds):
        for key, predictor in predictors.items():
            start = time.perf_counter()
            for _ in range(3):
                predictor.predict(batch)
            times[key].append(3 * 32 / (time.perf_counter() - start))
    best = {k: max(v) for k, v in times.items()}
    mid = {k: median(v) for k, v in times.items()}
    return [
        ("fp32 model-only, batch 32 (best / median img/s)", f"{best['fp32']:.1f} / {mid['fp32']:.1f}"),
        ("int8 model-only, batch 32 (best / median img/s)", f"{best['int8']:.1f} / {mid['int8']:.1f}"),
        ("int8 / fp32 (best; median) (target >= 2.0)", f"**{best['int8'] / best['fp32']:.2f}**; {mid['int8'] / mid['fp32']:.2f}"),
        ("rounds of 3 batches each, in turns", str(rounds)),
        ("ORT threads", os.environ.get("SIGHTQL_ORT_THREADS", str(os.cpu_count()))),
    ]


def _textile_files(limit: int) -> list[bytes]:
    import conformal_clip_data

    files = sorted(Path(conformal_clip_data.textile_simulated_root()).rglob("*.jpg"))
    order = np.random.default_rng(5).permutation(len(files))[:limit]
    return [files[i].read_bytes() for i in order]


def builtin(models_dir: Path) -> list[tuple[str, str]]:
    from sightql.models.agreement import agreement
    from sightql.models.builtin import cached_imagenet_int8, cached_imagenet_onnx, imagenet_int8_gate
    from sightql.models.onnx.runtime import OnnxPredictor
    from sightql.models.quantized import batched_outputs, preprocessed
    from sightql.models.sample_photos import generated_crops

    started = time.perf_counter()
    int8_path, int8_card = cached_imagenet_int8(models_dir)
    built = time.perf_counter() - started
    fp32_path, card = cached_imagenet_onnx(models_dir)
    fp32, int8 = OnnxPredictor(fp32_path, card), OnnxPredictor(int8_path, int8_card)
    rows = [("imagenet@int8 built (quantize + gate), seconds", f"{built:.1f}"),
            ("its gate when built (calibrated on 300 crops, seed 1; gated on 500, seed 3)", imagenet_int8_gate(models_dir)["sentence"])]
    for name, images in (("1,000 held-out photo crops (seed 2)", generated_crops(1000, seed=2)),
                         ("500 real textile JPEGs (information)", _textile_files(500))):
        batch, _ = preprocessed(images, card)
        outputs = [batched_outputs(p, batch) for p in (fp32, int8)]
        result = agreement(*outputs)
        confidence = float(np.median(outputs[0].max(axis=1)))
        rows += [(f"{name}: top-1 agreement (target >= 0.98)", f"**{result.top1_agreement:.4f}**"),
                 (f"{name}: fp32 top-1 in int8 top-5 (target >= 0.995)", f"**{result.top5_contains_top1:.4f}**"),
                 (f"{name}: median fp32 top-1 probability", f"{confidence:.3f}")]
    return rows


def textile(home: Path, epochs: int, image_size: int, seed: int) -> list[tuple[str, str]]:
    from train_accuracy import load_textile, split_tables

    warnings.filterwarnings("ignore")
    with sightql.connect(home) as s:
        load_textile(s, None)
        train, test = split_tables(s, "textile", 0.3, seed)
        started = time.perf_counter()
        s.train("tex", train, label="label", epochs=epochs, image_size=image_size, seed=seed, progress=False)
        trained = time.perf_counter() - started
        started = time.perf_counter()
        made = s.registry.quantize("tex", calibrate=train, n=300, label="label", seed=seed)
        quantized = time.perf_counter() - started

        def accuracy(ref: str) -> float:
            return s.sql(f"SELECT avg(CASE WHEN classify(?, image).label = label THEN 1 ELSE 0 END) AS a FROM {test}",
                         [ref]).column("a")[0].as_py()

        fp32_ref = s.registry.get_model("tex").version("v1").ref
        n_test = s.sql(f"SELECT count(*) AS n FROM {test}").column("n")[0].as_py()
        fp32_acc, int8_acc = accuracy(fp32_ref), accuracy(made.ref)
        figures = made.metrics
    return [
        ("training table / held-out test table", f"{n_test and 2000 - n_test} / {n_test} images (split seed {seed})"),
        ("fine-tuned (session.train)", f"{epochs} epochs at {image_size} px, {trained:.0f} s"),
        ("quantized (registry.quantize, 300 calibration images)", f"{made.ref}, {quantized:.0f} s"),
        ("its gate (other training images)", f"top-1 agreement {figures['int8_top1_agreement']:.4f} on "
                                             f"{int(figures['held_out_images'])}"),
        ("held-out accuracy fp32 / int8", f"{fp32_acc:.4f} / {int8_acc:.4f}"),
        ("points lost (target <= 1.0)", f"**{100 * (fp32_acc - int8_acc):.2f}**"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["speed", "builtin", "textile"], choices=["speed", "builtin", "textile"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sightql-bench-quantize-") as folder:
        home = Path(folder) / "warehouse"
        with sightql.connect(home):
            pass
        models_dir = home / "models"
        if "builtin" in args.parts:
            print_table("imagenet@int8 against imagenet (fp32)", builtin(models_dir))
        if "speed" in args.parts:
            print_table(f"Model only, ONNX Runtime, batch 32 (CPU, {os.cpu_count()} cores)", speed(models_dir, args.rounds))
        if "textile" in args.parts:
            print_table("A model fine-tuned on textile, quantized", textile(home, args.epochs, args.image_size, args.seed))


if __name__ == "__main__":
    main()
