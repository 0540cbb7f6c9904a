"""A seeded, disjoint calibration and held-out sample of a source's images (a table, FILE values, or a stage).

Images are drawn by content: exact copies (same sha256) count once and land on one side only, so the gate
never measures an image the model was calibrated on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sightql.errors import ConfigError
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.train.sources import Example, load_examples


@dataclass(frozen=True)
class Sample:
    calibration: list[bytes]
    held_out: list[bytes]
    held_out_labels: list[str | None] | None  # None when the source has no labels


def _read(reader, examples: list[Example]) -> list[bytes]:
    out: list[bytes] = []
    for start in range(0, len(examples), 64):
        out += reader.read([e.key for e in examples[start : start + 64]])
    return out


def draw_sample(warehouse: Warehouse, stages: StageCatalog, source: str, image: str, label: str | None,
                n: int, held_out: int, seed: int) -> Sample:
    """``n`` calibration images (at most half of the distinct ones) and up to ``held_out`` others, drawn with ``seed``."""
    if n < 1 or held_out < 1:
        raise ConfigError(f"n ({n}) and held_out ({held_out}) must be positive numbers of images")
    examples, reader = load_examples(warehouse, stages, source, image, label)
    distinct: dict[str, Example] = {}
    for example in examples:
        distinct.setdefault(example.sha256, example)
    unique = list(distinct.values())
    order = np.random.default_rng(seed).permutation(len(unique))
    calibration_count = min(n, len(unique) // 2)
    chosen = [unique[i] for i in order[:calibration_count]]
    gate = [unique[i] for i in order[calibration_count : calibration_count + held_out]]
    labels = [e.label or None for e in gate] if label is not None else None
    return Sample(_read(reader, chosen), _read(reader, gate), labels)
