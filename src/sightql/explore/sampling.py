"""Sample images from a stage, classify them in SQL where they lie, and score them against their folders.

``sample_stage(warehouse, registry, stages, '@xray/test', n=12, seed=0, model='xray@prod')`` picks ``n`` files under
the prefix (the same files for the same seed and listing), runs
``classify(model, stage_file(stage, path))`` on them in one query (no copy into a table), and
compares each label with the file's parent folder name, as training with ``label='folder'``
reads classes. Folder names match the model's labels case-insensitively (``NORMAL`` is
``normal``); a folder that is not one of the model's labels is never counted right or wrong,
and when no folder is, no accuracy is claimed. An image that cannot be read gets its error
in its row; the others are classified.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sightql.errors import ConfigError, StageError
from sightql.images.thumbnails import thumbnail
from sightql.registry import Registry
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.stages.paths import folder_label, split_stage_ref


MAX_SAMPLE = 64  # images per sample: a grid a person can look at, and a bounded query
THUMBNAIL_PX = 256

_QUERY = """
SELECT relative_path, image, classify($model, image) AS c
FROM (SELECT p AS relative_path, stage_file($stage, p) AS image FROM unnest($paths::VARCHAR[]) AS u(p))
ORDER BY relative_path
"""


@dataclass(frozen=True)
class SampledImage:
    relative_path: str
    truth: str | None  # the parent folder's name; None for a file at the stage root
    label: str | None
    score: float | None
    error: str | None
    correct: bool | None  # None when not judged (an error, or a folder that is not one of the model's labels)
    thumbnail: bytes | None  # a small JPEG for display; None when the bytes are not a readable image


@dataclass(frozen=True)
class ClassCount:
    folder: str
    images: int
    errors: int
    in_model_labels: bool
    correct: int | None  # None when the folder is not one of the model's labels


@dataclass(frozen=True)
class SampleSummary:
    n: int
    classified: int
    errors: int
    judged: int  # classified images whose folder is one of the model's labels
    correct: int
    accuracy: float | None  # correct / judged; None when nothing could be judged
    per_class: list[ClassCount]
    predicted: dict[str, int]  # label -> how many sampled images got it
    unmatched_folders: list[str]  # folder names that are not among the model's labels
    note: str  # one sentence: what the accuracy covers, or why none is claimed


@dataclass(frozen=True)
class StageSample:
    ref: str
    model: str
    model_version: str
    seed: int
    files_under_prefix: int
    rows: list[SampledImage] = field(repr=False)
    summary: SampleSummary


def choose(paths: list[str], n: int, seed: int) -> list[str]:
    """``n`` of ``paths`` (all when fewer), the same for the same seed and listing, in path order."""
    ordered = sorted(paths)
    return sorted(random.Random(seed).sample(ordered, min(n, len(ordered))))


def _classifier_labels(registry: Registry, model: str) -> tuple[str, tuple[str, ...]]:
    predictor = registry.predictor(model)
    card = predictor.card
    if card.modality != "image" or card.task != "classification":
        raise ConfigError(f"{model!r} is not an image classifier ({card.modality} {card.task}); pick a classification model")
    return predictor.model_version, card.labels


def sample_stage(
    warehouse: Warehouse, registry: Registry, stages: StageCatalog, ref: str, n: int = 12, seed: int = 0,
    model: str = "imagenet",
) -> StageSample:
    """Classify ``n`` files sampled from ``'@stage/prefix'`` with ``model`` and score them against their folders."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SAMPLE:
        raise ConfigError(f"n={n!r} is not valid; sample between 1 and {MAX_SAMPLE} images")
    name, prefix = split_stage_ref(ref)
    files = stages.get(name).list(prefix)
    if not files:
        raise StageError(f"no files under @{name}/{prefix}; check the prefix with `sightql stage ls {name}`")
    chosen = choose([f.relative_path for f in files], n, seed)
    model_version, labels = _classifier_labels(registry, model)
    found = warehouse.sql(_QUERY, {"model": model, "stage": f"@{name}", "paths": chosen}).to_pylist()
    by_folded = {label.casefold(): label for label in labels}
    rows = [_row(r, by_folded, warehouse) for r in found]
    return StageSample(f"@{name}/{prefix}", model, model_version, seed, len(files), rows, summarize(rows, labels))


def _row(found: dict[str, Any], by_folded: dict[str, str], warehouse: Warehouse) -> SampledImage:
    c = found["c"] or {}
    label, error = c.get("label"), c.get("error")
    if error is None and label is None:
        error = "no result"
    truth = folder_label(found["relative_path"])
    correct = None
    if error is None and truth is not None and truth.casefold() in by_folded:
        correct = label.casefold() == truth.casefold()
    return SampledImage(found["relative_path"], truth, label, c.get("score"), error, correct,
                        thumbnail(found["image"], warehouse.limits, THUMBNAIL_PX, quality=85))


def summarize(rows: list[SampledImage], labels: tuple[str, ...] | list[str]) -> SampleSummary:
    """n, how many were judged and right, accuracy, and counts per folder and per predicted label."""
    known = {label.casefold() for label in labels}
    folders = sorted({r.truth for r in rows if r.truth is not None})
    unmatched = [f for f in folders if f.casefold() not in known]
    matched = set(folders) - set(unmatched)
    per_class = []
    for folder in folders:
        mine = [r for r in rows if r.truth == folder]
        per_class.append(ClassCount(
            folder, len(mine), sum(r.error is not None for r in mine), folder in matched,
            sum(bool(r.correct) for r in mine) if folder in matched else None,
        ))
    judged = [r for r in rows if r.correct is not None]
    correct = sum(bool(r.correct) for r in judged)
    errors = sum(r.error is not None for r in rows)
    predicted = dict(Counter(r.label for r in rows if r.label is not None).most_common())
    return SampleSummary(
        n=len(rows), classified=len(rows) - errors, errors=errors, judged=len(judged), correct=correct,
        accuracy=correct / len(judged) if judged else None, per_class=per_class, predicted=predicted,
        unmatched_folders=unmatched,
        note=_note(folders, unmatched, len(judged), sum(r.error is not None and r.truth in matched for r in rows)),
    )


def _note(folders: list[str], unmatched: list[str], judged: int, unjudged_errors: int) -> str:
    if not folders:
        return "the sampled files are not in class folders, so there is no ground truth and no accuracy is claimed"
    if len(unmatched) == len(folders):
        return (f"the model's labels do not include the folder names ({', '.join(unmatched)}), "
                "so no accuracy is claimed")
    if judged == 0:
        return "no image in a folder named after one of the model's labels could be classified, so no accuracy is claimed"
    text = f"accuracy over {judged} image(s) whose folder names one of the model's labels (case-insensitive)"
    if unmatched:
        text += f"; folder(s) {', '.join(unmatched)} are not among the model's labels and are left out"
    if unjudged_errors:
        text += f"; {unjudged_errors} image(s) in folders named after its labels could not be classified and are left out"
    return text
