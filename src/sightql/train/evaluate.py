"""Evaluation: accuracy, per-class precision/recall/F1, confusion matrix, ROC-AUC for two classes."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def predict(model: Any, loader: Any, device: str, amp: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """(true class indices, class probabilities, mean cross-entropy loss) over a loader."""
    import torch

    model.eval()
    targets, probabilities = [], []
    total_loss, count = 0.0, 0
    with torch.inference_mode():
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device)
            with torch.autocast(device_type="cuda", enabled=amp and device.startswith("cuda")):
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
    """A JSON-ready report; ``roc_auc`` for two classes (None when a class is missing from the set)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predicted, labels=indices, zero_division=0
    )
    result: dict[str, Any] = {
        "images": int(len(targets)),
        "accuracy": float((predicted == targets).mean()) if len(targets) else None,
        "labels": list(labels),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "macro_f1": float(np.mean(f1)) if len(f1) else None,
        "confusion_matrix": confusion_matrix(targets, predicted, labels=indices).tolist(),
        "confusion_matrix_axes": "rows: true label, columns: predicted label, in the order of labels",
        "roc_auc": None,
    }
    if len(labels) == 2 and len(set(targets.tolist())) == 2:
        result["roc_auc"] = float(roc_auc_score(targets, probabilities[:, 1]))
        result["roc_auc_positive_label"] = labels[1]
    return result


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
