"""How closely a quantized model answers as its original: the gate a quantized version must pass.

Measured on held-out images (never the calibration ones): how often both give the same top-1 label,
how often the original's top-1 is within the quantized model's top 5, and, where the images have
labels, each model's accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Agreement:
    images: int
    top1_agreement: float
    top5_contains_top1: float
    fp32_accuracy: float | None = None
    int8_accuracy: float | None = None
    labelled: int = 0

    def metrics(self) -> dict[str, float]:
        """As stored on the quantized version (``models show``)."""
        out = {"held_out_images": float(self.images), "int8_top1_agreement": self.top1_agreement,
               "int8_top5_contains_fp32_top1": self.top5_contains_top1}
        if self.fp32_accuracy is not None and self.int8_accuracy is not None:
            out.update({"fp32_accuracy": self.fp32_accuracy, "int8_accuracy": self.int8_accuracy,
                        "labelled_held_out_images": float(self.labelled)})
        return out

    def sentence(self) -> str:
        """The figures in words, e.g. 'top-1 agreement 98.6% on 500 held-out images, ...'."""
        text = (f"top-1 agreement {self.top1_agreement:.1%} with fp32 on {self.images} held-out images, "
                f"fp32's top-1 within int8's top-5 for {self.top5_contains_top1:.1%}")
        if self.fp32_accuracy is not None and self.int8_accuracy is not None:
            text += f", accuracy {self.fp32_accuracy:.1%} fp32 and {self.int8_accuracy:.1%} int8 on {self.labelled} labelled"
        return text


def agreement(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None) -> Agreement:
    """Compare two models' outputs (one row of scores per image, same order). ``labels``: the true class index
    per image, or -1 where unknown."""
    if reference.shape != candidate.shape or reference.ndim != 2 or not len(reference):
        raise ValueError(f"outputs to compare must be two equal [images, classes] arrays, not {reference.shape} and {candidate.shape}")
    top1 = reference.argmax(axis=1)
    k = min(5, candidate.shape[1])
    top5 = np.argpartition(-candidate, k - 1, axis=1)[:, :k]
    result = Agreement(
        images=len(reference),
        top1_agreement=float((candidate.argmax(axis=1) == top1).mean()),
        top5_contains_top1=float((top5 == top1[:, None]).any(axis=1).mean()),
    )
    if labels is not None:
        known = labels >= 0
        if known.any():
            return Agreement(
                result.images, result.top1_agreement, result.top5_contains_top1,
                fp32_accuracy=float((top1[known] == labels[known]).mean()),
                int8_accuracy=float((candidate.argmax(axis=1)[known] == labels[known]).mean()),
                labelled=int(known.sum()),
            )
    return result
