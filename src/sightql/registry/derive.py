"""The ONNX file derived from a torch or Keras version at log time, so CPU inference runs ONNX Runtime."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sightql.models.card import ModelCard
from sightql.models.keras import export as keras_export
from sightql.models.torch.export import EXPORT_TOLERANCE, ExportCheckError, export_onnx
from sightql.registry.artifacts import DERIVED_ONNX, sha256_of
from sightql.registry.intake import Intake
from sightql.registry.loading import load_version
from sightql.registry.records import VersionRecord


def derive_onnx(record: VersionRecord, intake: Intake, card: ModelCard, staging: Path, home: Path) -> VersionRecord:
    """``record`` with its derived ONNX file, exported from the model ``intake`` opened (torch, Keras only)."""
    model = intake.model
    if intake.framework == "torch":
        return _derive(record, card, staging, home, lambda derived: export_onnx(model, card, derived), "torch")
    if intake.framework == "keras":

        def export(derived: Path) -> None:
            diff = keras_export.export_keras_model_onnx(model, card, derived)
            if diff > EXPORT_TOLERANCE:
                raise ExportCheckError(f"the ONNX export differs from Keras by {diff:.2e} (limit {EXPORT_TOLERANCE:.0e})")

        return _derive(record, card, staging, home, export, "Keras")
    return record


def _derive(
    record: VersionRecord, card: ModelCard, staging: Path, home: Path, export: Callable[[Path], Any], framework: str,
) -> VersionRecord:
    """Export once, checked against the framework (<= 1e-4); CPU inference then runs ONNX Runtime.

    An export that fails (or disagrees) is said in a warning and the version runs with the framework itself.
    """
    derived = staging / DERIVED_ONNX
    try:
        export(derived)
    except Exception as exc:
        derived.unlink(missing_ok=True)
        warnings.warn(
            f"{record.ref} could not be exported to ONNX ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            f"it will run with {framework} on the CPU too",
            stacklevel=4,
        )
        return record
    record = replace(record, derived_onnx_path=derived.relative_to(home).as_posix(), derived_onnx_sha256=sha256_of(derived))
    check = load_version(record, home, "cpu")
    check.predict(np.zeros(card.input.shape(1), dtype=np.float32))  # type: ignore[union-attr]
    return record
