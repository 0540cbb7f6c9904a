"""Run a predictor over a sequence of image bytes in full batches.

Decoding and preprocessing run in a thread pool (Pillow releases the GIL)
while the model works on the previous batch, so the two overlap. Each row's
failure is caught and reported on that row alone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from sightql.errors import SightQLError
from sightql.images.decode import ImageLimits
from sightql.images.preprocess import preprocess
from sightql.models.base import Predictor


@dataclass
class RowResult:
    """One row's answer: ``output`` is None exactly when ``error`` is set."""

    output: np.ndarray | None
    error: str | None


_pool_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def decode_pool(threads: int | None = None) -> ThreadPoolExecutor:
    """One shared decode pool per size for the process."""
    size = threads or max(1, os.cpu_count() or 1)
    with _pool_lock:
        pool = _pools.get(size)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="sightql-decode")
            _pools[size] = pool
        return pool


def _prepare(data: bytes | None, predictor: Predictor, limits: ImageLimits) -> np.ndarray | str:
    try:
        return preprocess(data, predictor.card.input, limits)
    except SightQLError as exc:
        return str(exc)
    except Exception as exc:  # a decoder bug must still only cost this row
        return f"cannot read image: {type(exc).__name__}: {exc}"


def predict_rows(
    predictor: Predictor,
    images: Sequence[bytes | None],
    *,
    batch_size: int = 32,
    limits: ImageLimits = ImageLimits(),
    threads: int | None = None,
) -> list[RowResult]:
    """Predict every row; returns one :class:`RowResult` per input, in order."""
    pool = decode_pool(threads)
    starts = range(0, len(images), batch_size)

    def submit(start: int) -> list[Future]:
        return [pool.submit(_prepare, data, predictor, limits) for data in images[start : start + batch_size]]

    results: list[RowResult] = []
    pending = submit(0) if len(images) else []
    for index, start in enumerate(starts):
        current = pending
        if index + 1 < len(starts):
            pending = submit(starts[index + 1])
        prepared = [future.result() for future in current]
        results.extend(_run_batch(predictor, prepared))
    return results


def _run_batch(predictor: Predictor, prepared: list[np.ndarray | str]) -> list[RowResult]:
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
