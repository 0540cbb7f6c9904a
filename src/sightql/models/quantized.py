"""Quantize an fp32 ONNX image classifier to int8 and gate it: calibrate, measure on held-out images, refuse or keep.

The one recipe behind ``registry.quantize`` (a registered version) and ``imagenet@int8`` (the built-in):
images are preprocessed by the card, exactly as ``classify`` feeds the model; the int8 file is made by
:func:`sightql.models.onnx.quantize.quantize_onnx`; the gate (:mod:`sightql.models.agreement`) runs both
models on the held-out images, which are never calibration images.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sightql.errors import ConfigError, ImageError, QuantizeRefused
from sightql.images.preprocess import preprocess
from sightql.models.agreement import Agreement, agreement
from sightql.models.card import ModelCard
from sightql.models.onnx.quantize import quantize_onnx
from sightql.models.onnx.runtime import OnnxPredictor

MIN_CALIBRATION = 10
MIN_HELD_OUT = 20
SPEED_BATCH = 32


def preprocessed(images: Sequence[bytes], card: ModelCard) -> tuple[np.ndarray, list[int]]:
    """The images as the model's input batch, and the positions of those that could be decoded (bad ones are left out)."""
    arrays, kept = [], []
    for i, data in enumerate(images):
        try:
            arrays.append(preprocess(data, card.input))
            kept.append(i)
        except ImageError:
            continue
    if not arrays:
        return np.zeros((0, *card.input.shape(1)[1:]), dtype=np.float32), kept
    return np.stack(arrays).astype(np.float32), kept


def batched_outputs(predictor: OnnxPredictor, images: np.ndarray) -> np.ndarray:
    """The model's outputs for ``images``, SPEED_BATCH at a time."""
    return np.concatenate([predictor.predict(images[i : i + SPEED_BATCH]) for i in range(0, len(images), SPEED_BATCH)])


def model_only_speedup(fp32: OnnxPredictor, int8: OnnxPredictor, images: np.ndarray, repeats: int = 3) -> float:
    """int8 img/s over fp32 img/s on one batch of 32, best of ``repeats`` each, timed in turn."""
    batch = np.resize(images, (SPEED_BATCH, *images.shape[1:])).astype(np.float32)
    best = {"fp32": float("inf"), "int8": float("inf")}
    for predictor in (fp32, int8):
        predictor.predict(batch)  # warm-up
    for _ in range(repeats):
        for key, predictor in (("fp32", fp32), ("int8", int8)):
            start = time.perf_counter()
            predictor.predict(batch)
            best[key] = min(best[key], time.perf_counter() - start)
    return best["fp32"] / best["int8"]


def build_quantized(
    fp32_path: Path, card: ModelCard, out_path: Path, calibration: Sequence[bytes], held_out: Sequence[bytes],
    held_out_labels: Sequence[str | None] | None = None, threshold: float = 0.98, force: bool = False,
    name: str = "the model", method: str = "minmax",
) -> dict[str, Any]:
    """Write ``out_path`` (int8) from ``fp32_path`` and return the report (recipe, gate figures, speed-up).

    Raises QuantizeRefused, with the figures, when top-1 agreement is below ``threshold`` and not ``force``;
    ``out_path`` is then removed.
    """
    if card.task != "classification" or not card.labels:
        raise ConfigError(f"{name} is not an image classifier with labels; only classifiers can be quantized and gated for now")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold {threshold} is not a fraction; use e.g. 0.98")
    calibration_batch, _ = preprocessed(calibration, card)
    held_batch, kept = preprocessed(held_out, card)
    if len(calibration_batch) < MIN_CALIBRATION or len(held_batch) < MIN_HELD_OUT:
        raise ConfigError(
            f"quantizing {name} needs at least {MIN_CALIBRATION} calibration and {MIN_HELD_OUT} held-out images that decode; "
            f"got {len(calibration_batch)} and {len(held_batch)}: give a source with more images"
        )
    started = time.perf_counter()
    recipe = quantize_onnx(fp32_path, out_path, calibration_batch, method=method)
    seconds = time.perf_counter() - started
    fp32, int8 = OnnxPredictor(fp32_path, card), OnnxPredictor(out_path, card)
    labels = None
    if held_out_labels is not None:
        index = {label: i for i, label in enumerate(card.labels)}
        labels = np.array([index.get(held_out_labels[i] or "", -1) for i in kept])
    gate: Agreement = agreement(batched_outputs(fp32, held_batch), batched_outputs(int8, held_batch), labels)
    report: dict[str, Any] = {
        **recipe, **gate.metrics(), "threshold": threshold, "quantize_seconds": round(seconds, 1),
        "int8_speedup_batch32": round(model_only_speedup(fp32, int8, held_batch), 2), "forced": False,
    }
    if gate.top1_agreement < threshold:
        if not force:
            out_path.unlink(missing_ok=True)
            raise QuantizeRefused(
                f"{name} in int8 was refused: {gate.sentence()}, below the {threshold:.0%} threshold; "
                "calibrate on more images like yours (--n), or keep it anyway with --force"
            )
        report["forced"] = True
    report["sentence"] = gate.sentence()
    return report
