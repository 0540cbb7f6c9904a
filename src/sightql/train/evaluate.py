"""Evaluation: accuracy, per-class precision/recall/F1, confusion matrix, ROC-AUC for two classes."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def predict(model: Any, loader: Any, device: str, amp: bool, precision: str = "fp32") -> tuple[np.ndarray, np.ndarray, float]:
    """(true class indices, class probabilities, mean cross-entropy loss) over a loader; ``precision='bf16'``
    evaluates under CPU bfloat16 autocast, as the run trained (see :mod:`sightql.train.speed`)."""
    import torch

    from sightql.train.speed import autocast

    model.eval()
    targets, probabilities = [], []
    total_loss, count = 0.0, 0
    with torch.inference_mode():
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device)
            with autocast(device, amp, precision):
                logits = model(images)
            logits = logits.float()
            total_loss += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
            count += len(labels)
            probabilities.append(torch.softmax(logits, dim=1).cpu().numpy())
            targets.append(labels.cpu().numpy())
    if not count:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32), float("nan")
    return np.concatenate(targets), np.concatenate(probabilities), total_loss / count


def report(targets: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """A JSON-ready report; ``roc_auc`` for two classes (None when a class is missing from the set).

    Plain numpy, and the same numbers scikit-learn's ``precision_recall_fscore_support(...,
    zero_division=0)``, ``confusion_matrix`` and ``roc_auc_score`` give (tests compare them), so
    training needs no scikit-learn.
    """
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(targets, predicted, len(labels))
    true_positives = np.diag(matrix)
    support, predictions = matrix.sum(axis=1), matrix.sum(axis=0)
    precision = _ratio(true_positives, predictions)
    recall = _ratio(true_positives, support)
    f1 = _ratio(2.0 * true_positives, (support + predictions).astype(np.float64))
    result: dict[str, Any] = {
        "images": int(len(targets)),
        "accuracy": float((predicted == targets).mean()) if len(targets) else None,
        "labels": list(labels),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "macro_f1": float(np.mean(f1)) if len(f1) else None,
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_axes": "rows: true label, columns: predicted label, in the order of labels",
        "roc_auc": None,
    }
    if len(labels) == 2 and len(set(targets.tolist())) == 2:
        result["roc_auc"] = roc_auc(targets == 1, probabilities[:, 1])
        result["roc_auc_positive_label"] = labels[1]
    return result


def confusion_matrix(targets: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs: rows true, columns predicted."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(targets, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator per class, 0 where the denominator is 0 (a class never true or never predicted)."""
    out = np.zeros(len(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids between the curve's points at each distinct score, so tied
    scores count half); ``positive`` holds both True and False."""
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # last row of each distinct score
    true_positives = np.cumsum(positive)[last]
    false_positives = last + 1 - true_positives
    if len(last) > 2:  # drop points collinear with their neighbours, as scikit-learn does: same sum of areas
        corner = np.r_[True, (np.diff(false_positives, 2) != 0) | (np.diff(true_positives, 2) != 0), True]
        true_positives, false_positives = true_positives[corner], false_positives[corner]
    true_positives, false_positives = np.r_[0, true_positives], np.r_[0, false_positives]
    tpr, fpr = true_positives / true_positives[-1], false_positives / false_positives[-1]
    return float((np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0).sum())


def confusion_cells(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A report's confusion matrix as long rows (true, predicted, count, share of the true row), for a heatmap."""
    labels, matrix = report["labels"], report["confusion_matrix"]
    cells = []
    for true_label, counts in zip(labels, matrix):
        total = sum(counts)
        for predicted_label, count in zip(labels, counts):
            cells.append({"true": true_label, "predicted": predicted_label, "count": int(count),
                          "share": count / total if total else 0.0})
    return cells
