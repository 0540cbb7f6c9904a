"""The ONNX file derived from a torch or Keras version at log time, so CPU inference runs ONNX Runtime."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sightql.models.card import ModelCard
from sightql.models.keras import export as keras_export
from sightql.models.tensorflow.export import convert_to_onnx
from sightql.models.torch.export import EXPORT_TOLERANCE, ExportCheckError, export_onnx
from sightql.registry.artifacts import DERIVED_ONNX, sha256_of
from sightql.registry.intake import Intake
from sightql.registry.loading import load_version
from sightql.registry.records import VersionRecord


def derive_onnx(record: VersionRecord, intake: Intake, card: ModelCard, staging: Path, home: Path) -> VersionRecord:
    """``record`` with its derived ONNX file, exported from the model ``intake`` opened (torch, Keras, TensorFlow)."""
    model = intake.model
    if intake.framework == "torch":
        return _derive(record, card, staging, home, lambda derived: export_onnx(model, card, derived), "torch")
    if intake.framework == "keras":

        def export(derived: Path) -> None:
            diff = keras_export.export_keras_model_onnx(model, card, derived)
            if diff > EXPORT_TOLERANCE:
                raise ExportCheckError(f"the ONNX export differs from Keras by {diff:.2e} (limit {EXPORT_TOLERANCE:.0e})")

        return _derive(record, card, staging, home, export, "Keras")
    if intake.framework == "tensorflow":
        if card.modality == "text":
            return _note(record, "its signature takes strings, and ONNX Runtime has no standard ops for TensorFlow's text ops")
        return _derive(record, card, staging, home, lambda derived: convert_to_onnx(model, card, derived), "TensorFlow")
    return record


def _derive(
    record: VersionRecord, card: ModelCard, staging: Path, home: Path, export: Callable[[Path], Any], framework: str,
) -> VersionRecord:
    """Export once, checked against the framework (<= 1e-4); CPU inference then runs ONNX Runtime.

    An export that fails (or disagrees) is said in a warning and the version runs with the framework itself;
    the reason is kept in its load options (``onnx_note``), which ``models show`` prints.
    """
    derived = staging / DERIVED_ONNX
    try:
        export(derived)
    except Exception as exc:
        derived.unlink(missing_ok=True)
        reason = (str(exc).splitlines() or [""])[0][:200]
        warnings.warn(
            f"{record.ref} could not be exported to ONNX ({type(exc).__name__}: {reason}); "
            f"it will run with {framework} on the CPU too",
            stacklevel=4,
        )
        converter = "tf2onnx" if framework == "TensorFlow" else f"the {framework} ONNX export"
        return _note(record, f"{converter} could not convert: {reason or type(exc).__name__}")
    record = replace(record, derived_onnx_path=derived.relative_to(home).as_posix(), derived_onnx_sha256=sha256_of(derived))
    check = load_version(record, home, "cpu")
    check.predict(np.zeros(card.input.shape(1), dtype=np.float32))  # type: ignore[union-attr]
    return record


def _note(record: VersionRecord, note: str) -> VersionRecord:
    """``record`` with why it has no derived ONNX file kept in its load options."""
    return replace(record, load_options=json.dumps({**record.options, "onnx_note": note}, sort_keys=True))
