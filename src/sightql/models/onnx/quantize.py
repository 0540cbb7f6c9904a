"""An fp32 ONNX image model to int8 (ONNX Runtime static quantization, QDQ), calibrated on the user's images.

The recipe, chosen by measurement on EfficientNet-Lite0 (docs/quantization.md, "Why this recipe"):

* weights: int8, symmetric, per output channel, each weight's step chosen by GPTQ on the calibration
  images and each bias corrected for the mean shift rounding leaves (:mod:`weight_rounding`). Rounding
  to the nearest step moved the top-1 label of 7% of photos; most of the loss was there, not in the
  activations;
* kept in fp32 (:func:`weight_rounding.keep_float`): the convolutions from the input up to the first
  depthwise one (Lite0: the stem and block 0's depthwise, ~4% of the work, ~30% of the weight error)
  and the classifier (Gemm);
* activations: uint8, per tensor; the linear ones (projection outputs, residual sums) clipped where the
  squared error on the calibration images is least (:func:`weight_rounding.activation_overrides`), the
  others by ``method`` ('minmax' by default; 'percentile' and 'entropy' are there too).

Nothing here knows about the registry: a file and calibration batches in, a file out.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

METHODS = ("minmax", "percentile", "entropy")
CALIBRATION_BATCH = 10  # images per calibration run (ORT's histogram calibrators need equal batches)


def _batches(images: np.ndarray) -> list[np.ndarray]:
    usable = len(images) - len(images) % CALIBRATION_BATCH if len(images) >= CALIBRATION_BATCH else len(images)
    return [images[i : i + CALIBRATION_BATCH] for i in range(0, usable, CALIBRATION_BATCH)] or [images]


class _Reader:
    """ONNX Runtime's CalibrationDataReader over fixed batches."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]):
        self._all = [{input_name: np.ascontiguousarray(b, dtype=np.float32)} for b in batches]
        self._feeds = iter(self._all)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:
        self._feeds = iter(self._all)


def quantize_onnx(
    fp32_path: Path, out_path: Path, calibration: np.ndarray, method: str = "minmax", rounding: str = "gptq",
    threads: int | None = None,
) -> dict[str, str | int]:
    """Write the int8 version of ``fp32_path`` to ``out_path``, calibrated on ``calibration`` (preprocessed
    images, the model's input layout). Returns how it was made (stored with the version)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from sightql.models.onnx.weight_rounding import activation_overrides, keep_float, round_weights

    if method not in METHODS:
        raise ValueError(f"method {method!r}: use one of {', '.join(METHODS)}")
    with tempfile.TemporaryDirectory(prefix="sightql-quantize-") as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared), load_external_data=False)
        keep, input_name = keep_float(graph), graph.graph.input[0].name
        batches = _batches(calibration)
        overrides: dict[str, object] = {}
        if rounding == "gptq":
            rounded = round_weights(str(prepared), batches, skip=set(keep), threads=threads)
            overrides = activation_overrides(rounded, batches, threads)
            onnx.save(rounded, str(prepared))
        elif rounding != "nearest":
            raise ValueError(f"rounding {rounding!r}: use 'gptq' or 'nearest'")
        extra: dict[str, object] = {"TensorQuantOverrides": overrides} if overrides else {}
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        tmp_out = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
        quantize_static(
            str(prepared), str(tmp_out), _Reader(input_name, batches),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
            nodes_to_exclude=keep, extra_options=extra,
        )
        tmp_out.replace(out_path)
    return {"weights": f"int8 per channel, {'GPTQ rounding and bias correction' if rounding == 'gptq' else 'nearest rounding'}",
            "activations": f"uint8 per tensor, least-squared-error ranges for linear tensors, {method} for the rest", "kept_fp32": ", ".join(keep) or "none",
            "calibration_images": int(len(calibration))}
