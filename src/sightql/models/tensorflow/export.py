"""Convert an image SavedModel's chosen signature to ONNX with tf2onnx, checked against TensorFlow.

The converted file runs on ONNX Runtime (the fast CPU path). A conversion that fails, leaves
ops ONNX Runtime cannot run, or disagrees with TensorFlow by more than ``EXPORT_TOLERANCE`` on a
probe batch raises :class:`ConversionError` with the reason; the caller then runs the model
through TensorFlow and records why.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
import numpy as np

from sightql.errors import SightQLError
from sightql.models.base import finish_output
from sightql.models.card import ModelCard
from sightql.models.tensorflow.backend import import_tensorflow, import_tf2onnx
from sightql.models.tensorflow.signature import SavedModel
from sightql.partial_files import partial_path, remove_dead_partials

EXPORT_TOLERANCE = 1e-4
OPSET = 17


class ConversionError(SightQLError):
    """tf2onnx could not convert the model, or the converted model does not reproduce TensorFlow's outputs."""


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """tf2onnx logs each op it cannot convert at ERROR level and TensorFlow warns about the TF1 freezing
    API tf2onnx uses; the outcome is reported once, as this module's ConversionError, instead."""
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "tensorflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def convert_to_onnx(model: SavedModel, card: ModelCard, destination: Path) -> float:
    """Write ``destination`` (atomically, once checked) and return the largest difference from TensorFlow."""
    tf = import_tensorflow()
    tf2onnx = import_tf2onnx()
    import onnx

    if model.info.modality != "image":
        raise ConversionError("its signature takes strings, and ONNX Runtime has no standard ops for TensorFlow's text ops")
    spec = tf.TensorSpec([None, *card.input.shape(1)[1:]], tf.float32, name="input")
    function = tf.function(lambda tensor: model(tensor), input_signature=[spec])
    try:
        with _quiet_converter():
            proto, _ = tf2onnx.convert.from_function(function, input_signature=[spec], opset=OPSET)
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises anything from assertions to KeyErrors
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise ConversionError(f"{type(exc).__name__}{': ' + first if first else ''}") from None
    unsupported = sorted({n.op_type for n in proto.graph.node if not onnx.defs.has(n.op_type, n.domain or "")})
    if unsupported:
        raise ConversionError(f"TensorFlow ops with no ONNX equivalent: {', '.join(unsupported[:6])}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_partials(destination.parent)
    tmp = partial_path(destination)
    try:
        tmp.write_bytes(proto.SerializeToString())
        diff = check_conversion(model, tmp, card)
        if diff > EXPORT_TOLERANCE:
            raise ConversionError(f"the ONNX model differs from TensorFlow by {diff:.2e} (limit {EXPORT_TOLERANCE:.0e})")
        os.replace(tmp, destination)
        return diff
    finally:
        tmp.unlink(missing_ok=True)


def check_conversion(model: SavedModel, onnx_path: Path, card: ModelCard) -> float:
    """Largest difference between ONNX Runtime and TensorFlow on a probe batch, compared as the card reads them."""
    import onnxruntime as ort

    sample = np.random.default_rng(0).random(card.input.shape(3), dtype=np.float32)  # pixels as the card feeds them
    expected = finish_output(model.run(sample), card)
    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: sample})[0]
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime refuses an unrunnable graph with several kinds
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConversionError(f"ONNX Runtime cannot run the converted model ({first})") from None
    return float(np.abs(finish_output(np.asarray(got), card) - expected).max())
