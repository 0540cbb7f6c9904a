"""A run's best weights registered as the next version of its model, with the evaluation's metrics."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from sightql.registry import Registry
from sightql.train.bases import BUNDLED
from sightql.train.options import TrainOptions


def register_model(registry: Registry, model: Any, kind: str, options: TrainOptions, labels: list[str], spec: Any,
                   run_id: str, val_report: dict[str, Any], test_report: dict[str, Any] | None) -> str:
    """Log ``model`` under ``options.name`` and set its metrics; returns the version's reference ('name@vN')."""
    metrics = {"val_accuracy": val_report["accuracy"], "val_loss": val_report["loss"], "val_macro_f1": val_report["macro_f1"]}
    if val_report.get("roc_auc") is not None:
        metrics["val_roc_auc"] = val_report["roc_auc"]
    if test_report is not None:
        metrics["test_accuracy"] = test_report["accuracy"]
        if test_report.get("roc_auc") is not None:
            metrics["test_roc_auc"] = test_report["roc_auc"]
    model = model.eval().cpu()
    version = registry.log_model(
        model, options.name, labels=labels, input=replace(spec), output="logits",
        architecture=None if kind == BUNDLED else kind,
        description=f"trained by session.train, run {run_id}, base {options.base}, from {options.source}",
    )
    for metric, value in metrics.items():
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            version.set_metric(metric, value)
    return version.ref
