"""Honest train/validation splits: by content hash, stratified by label, reproducible by seed.

All copies of the same bytes (same sha256) go to the same side, so no image, and no exact
copy of one under another name, is both trained on and validated on.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass

from sightql.errors import ConfigError
from sightql.train.sources import Example

TRAIN_VALUES = ("train", "training")
VAL_VALUES = ("val", "valid", "validation", "dev")


@dataclass(frozen=True)
class Split:
    train: list[Example]
    val: list[Example]

    def overlap(self) -> set[str]:
        """Content hashes found on both sides (empty by construction)."""
        return {e.sha256 for e in self.train} & {e.sha256 for e in self.val}


def _order_key(sha256: str, seed: int) -> str:
    """A seeded, platform-independent shuffle order for one content hash."""
    return hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()


def split_by_content(examples: list[Example], val_fraction: float, seed: int) -> Split:
    """Group by sha256; within each label, send ``round(n * val_fraction)`` groups (at least one) to validation."""
    groups: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        groups[example.sha256].append(example)
    by_label: dict[str, list[str]] = defaultdict(list)
    for sha, members in groups.items():
        label = Counter(e.label for e in members).most_common(1)[0][0]  # a group with mixed labels stays whole
        by_label[label].append(sha)
    val_hashes: set[str] = set()
    for label, hashes in sorted(by_label.items()):
        if len(hashes) < 2:
            warnings.warn(f"label {label!r} has one distinct image; it is only trained on, not validated", stacklevel=3)
            continue
        ordered = sorted(hashes, key=lambda h: _order_key(h, seed))
        count = min(len(ordered) - 1, max(1, round(len(ordered) * val_fraction)))
        val_hashes.update(ordered[:count])
    train = [e for e in examples if e.sha256 not in val_hashes]
    val = [e for e in examples if e.sha256 in val_hashes]
    return Split(train, val)


def split_by_column(examples: list[Example], column: str) -> Split:
    """Rows marked 'train'/'val' (or 'validation', 'dev'); a validation row whose bytes are also trained on is left out."""
    unknown = sorted({str(e.split) for e in examples if (e.split or "").lower() not in TRAIN_VALUES + VAL_VALUES})
    if unknown:
        raise ConfigError(
            f"split column {column!r} holds {', '.join(map(repr, unknown[:5]))}; use 'train' or 'val' in every row"
        )
    train = [e for e in examples if (e.split or "").lower() in TRAIN_VALUES]
    train_hashes = {e.sha256 for e in train}
    val = [e for e in examples if (e.split or "").lower() in VAL_VALUES]
    leaked = [e for e in val if e.sha256 in train_hashes]
    if leaked:
        warnings.warn(
            f"{len(leaked)} validation row(s) are exact copies of training images and are left out of validation",
            stacklevel=3,
        )
        val = [e for e in val if e.sha256 not in train_hashes]
    if not train or not val:
        raise ConfigError(f"split column {column!r} leaves an empty train or val side; mark rows 'train' and 'val'")
    return Split(train, val)
