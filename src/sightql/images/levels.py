"""Mapping a range of pixel values onto 0..255, shared by 16-bit/float images and DICOM."""

from __future__ import annotations

import numpy as np


def value_range(values: np.ndarray) -> tuple[float, float]:
    """The lowest and highest value present."""
    return float(values.min()), float(values.max())


def to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``low..high`` -> ``0..255``, rounded and clipped (all zeros when the range is empty)."""
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip(np.rint((np.asarray(values, dtype=np.float64) - low) * scale), 0, 255).astype(np.uint8)
