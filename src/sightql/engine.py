"""The one batch engine: decode ahead in one thread pool, run the model in full batches, shape the answers.

Every path that runs an image model goes through here: the SQL functions (and so
``Session.classify``, the API and stage sampling, which query them) and the batch-predict
runners. Decoding and preprocessing run in the process's one worker pool (Pillow releases
the GIL) while the model works on the previous batch, so the two overlap; at most
``threads`` rows of one call decode at once. Each row's failure is caught and reported on
that row alone. :func:`best_label` and :func:`top_labels` turn a model's output into
labels and scores, the same way for SQL and for predictions written back.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from sightql.errors import SightQLError
from sightql.images.decode import ImageLimits
from sightql.images.preprocess import preprocess
from sightql.models.base import Predictor

B = TypeVar("B")
I = TypeVar("I")  # noqa: E741
X = TypeVar("X")

Prepared = np.ndarray | str  # a preprocessed image, or why this row could not be read


@dataclass
class RowResult:
    """One row's answer: ``output`` is None exactly when ``error`` is set."""

    output: np.ndarray | None
    error: str | None


# ---- the one worker pool -------------------------------------------------------------------
_pool_lock = threading.Lock()
_pool: list[tuple[int, ThreadPoolExecutor]] = []  # (its width, the pool): one entry at most


def worker_pool(threads: int | None = None) -> ThreadPoolExecutor:
    """The process's one pool for decoding and file reads, at least ``threads`` (default: CPU count) wide.

    Asked for more threads than it has, it is replaced by a wider one (callers still holding the
    old one finish with it; its threads end once it is dropped); callers bound their own
    concurrency (see :func:`run_batches`).
    """
    size = threads or max(1, os.cpu_count() or 1)
    with _pool_lock:
        if not _pool or _pool[0][0] < size:
            _pool[:] = [(size, ThreadPoolExecutor(max_workers=size, thread_name_prefix="sightql-worker"))]
        return _pool[0][1]


# ---- decode ahead, run in batches --------------------------------------------------------------
def prepare_image(data: bytes | None, predictor: Predictor, limits: ImageLimits) -> Prepared:
    """The model's input tensor for ``data``, or one sentence saying why this row cannot be read."""
    try:
        return preprocess(data, predictor.card.input, limits)
    except SightQLError as exc:
        return str(exc)
    except Exception as exc:  # a decoder bug must still only cost this row
        return f"cannot read image: {type(exc).__name__}: {exc}"


def run_batches(
    predictor: Predictor,
    batches: Iterable[tuple[B, Sequence[I]]],
    prepare: Callable[[I], tuple[Prepared, X]],
    threads: int | None = None,
) -> Iterator[tuple[B, list[RowResult], list[X]]]:
    """For each ``(tag, items)`` batch, in order: ``(tag, one RowResult per item, what prepare returned beside)``.

    The next batch is prepared in the pool (in at most ``threads`` tasks) while the model runs this one.
    """
    width = threads or max(1, os.cpu_count() or 1)
    pool = worker_pool(width)

    def prepare_all(items: Sequence[I]) -> list[tuple[Prepared, X]]:
        return [prepare(item) for item in items]

    def submit(batch: tuple[B, Sequence[I]] | None) -> tuple[B, int, list[Future]] | None:
        if batch is None:
            return None
        tag, items = batch
        groups = max(1, min(width, len(items)))  # rows i, i+groups, ... go to one task
        return tag, groups, [pool.submit(prepare_all, items[g::groups]) for g in range(groups)]

    source = iter(batches)
    pending = submit(next(source, None))
    while pending is not None:
        tag, groups, futures = pending
        parts = [future.result() for future in futures]
        prepared: list[tuple[Prepared, X]] = [None] * sum(len(p) for p in parts)  # type: ignore[list-item]
        for g, part in enumerate(parts):
            prepared[g::groups] = part
        pending = submit(next(source, None))  # the next batch decodes while the model runs this one
        yield tag, run_batch(predictor, [item for item, _ in prepared]), [extra for _, extra in prepared]


def predict_rows(
    predictor: Predictor,
    images: Sequence[bytes | None],
    *,
    batch_size: int = 32,
    limits: ImageLimits = ImageLimits(),
    threads: int | None = None,
) -> list[RowResult]:
    """Predict every row; returns one :class:`RowResult` per input, in order."""
    batches = ((start, images[start : start + batch_size]) for start in range(0, len(images), batch_size))
    results: list[RowResult] = []
    for _, rows, _ in run_batches(predictor, batches, lambda data: (prepare_image(data, predictor, limits), None),
                                  threads):
        results.extend(rows)
    return results


def run_batch(predictor: Predictor, prepared: Sequence[Prepared]) -> list[RowResult]:
    """One model call over the readable rows; unreadable rows keep their reason, a failed call fails its rows."""
    good = [i for i, item in enumerate(prepared) if not isinstance(item, str)]
    out = [RowResult(None, item) if isinstance(item, str) else None for item in prepared]
    if good:
        batch = np.stack([prepared[i] for i in good])  # type: ignore[misc]
        try:
            outputs = predictor.predict(batch)
        except Exception as exc:
            message = f"model failed on this batch: {type(exc).__name__}: {exc}"
            for i in good:
                out[i] = RowResult(None, message)
        else:
            for row, i in enumerate(good):
                out[i] = RowResult(outputs[row], None)
    return out  # type: ignore[return-value]


# ---- shape the answers ------------------------------------------------------------------------
def best_label(output: np.ndarray, labels: Sequence[str]) -> tuple[str, float]:
    """The most likely label and its score."""
    best = int(np.argmax(output))
    return labels[best], float(output[best])


def top_labels(output: np.ndarray, labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` most likely labels, best first (ties in label order): ``[{"label", "score"}, ...]``."""
    order = np.argsort(-np.asarray(output), kind="stable")[:k]
    return [{"label": labels[i], "score": float(output[i])} for i in order]
