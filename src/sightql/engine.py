"""The one batch engine: decode ahead in one thread pool, run the model in full batches, shape the answers.

Every path that runs an image model goes through here: the SQL functions (and so
``Session.classify``, the API and stage sampling, which query them) and the batch-predict
runners. Decoding and preprocessing run in the process's one worker pool (Pillow releases
the GIL) while the model works on the previous batch, so the two overlap; at most
``threads`` rows of one call decode at once. Each row's failure is caught and reported on
that row alone. :func:`best_label` and :func:`top_labels` turn a model's output into
labels and scores, the same way for SQL and for predictions written back.

A predictor that decodes images itself (``takes_encoded``: the GPU predictor of
:mod:`sightql.models.torch.gpu`, which decodes JPEGs on the GPU) gets the rows' bytes instead of
arrays, through its ``predict_encoded``; the pool then only reads (and hashes) them.

Rows whose value is not their bytes (FILE values) are read where they are decoded, in the
same pool task, within the process's one :class:`ReadBudget`: the bytes of files read and
not yet decoded, across every reader (each SQL function call DuckDB runs at once, predict,
training), stay under ``read_budget_bytes``, so peak memory follows that setting rather
than the core count or DuckDB's thread count.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
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

# A preprocessed image, why this row could not be read, or (for a predictor that decodes itself,
# see takes_encoded) the image's bytes.
Prepared = np.ndarray | str | bytes


@dataclass
class RowResult:
    """One row's answer: ``output`` is None exactly when ``error`` is set."""

    output: np.ndarray | None
    error: str | None


# ---- the one worker pool -------------------------------------------------------------------
_pool_lock = threading.Lock()
_pool: list[tuple[int, ThreadPoolExecutor]] = []  # (its width, the pool): one entry at most


def _width(threads: int | None) -> int:
    """``threads``, or the CPU count when none is given."""
    return threads or max(1, os.cpu_count() or 1)


def worker_pool(threads: int | None = None) -> ThreadPoolExecutor:
    """The process's one pool for decoding and file reads, at least ``threads`` (default: CPU count) wide.

    Asked for more threads than it has, it is replaced by a wider one (callers still holding the
    old one finish with it; its threads end once it is dropped); callers bound their own
    concurrency (see :func:`run_batches`).
    """
    size = _width(threads)
    with _pool_lock:
        if not _pool or _pool[0][0] < size:
            _pool[:] = [(size, ThreadPoolExecutor(max_workers=size, thread_name_prefix="sightql-worker"))]
        return _pool[0][1]


# ---- the read budget --------------------------------------------------------------------------
class ReadBudget:
    """Bytes of image files read and not yet decoded, across every thread of the process.

    :meth:`hold` waits while other reads hold the budget and this one would take it past
    ``limit``; a file larger than the whole budget is read when nothing else is held (alone,
    rather than never). Holders wait for nothing else while holding, so it cannot deadlock.
    """

    def __init__(self, limit: int):
        self.limit = max(1, int(limit))
        self.held = 0
        self.peak = 0  # the most ever held at once (benchmarks and tests read it)
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, size: int) -> Iterator[None]:
        size = max(0, int(size))
        with self._changed:
            while self.held and self.held + size > self.limit:
                self._changed.wait()
            self.held += size
            self.peak = max(self.peak, self.held)
        try:
            yield
        finally:
            with self._changed:
                self.held -= size
                self._changed.notify_all()


_budget: list[ReadBudget] = []  # the process's one budget, made on first use


def read_budget(limit: int | None = None) -> ReadBudget:
    """The process's one :class:`ReadBudget`; ``limit`` (bytes, the caller's ``read_budget_bytes``
    setting) sets its size, so the last session configured in a process decides it."""
    with _pool_lock:
        if not _budget:
            _budget.append(ReadBudget(limit or 256 * 1024 * 1024))
        elif limit:
            _budget[0].limit = max(1, int(limit))
        return _budget[0]


@dataclass(frozen=True)
class BudgetedRead:
    """How a row whose value is not its bytes is read: ``read`` turns the value into bytes and
    ``size`` says how many it will be before they are read; :meth:`use` holds that many of
    ``budget`` from before the read until ``use``'s function is done with the bytes."""

    read: Callable[[Any], bytes | None]
    size: Callable[[Any], int]
    budget: ReadBudget

    def use(self, item: Any, fn: Callable[[bytes | None], X]) -> X:
        with self.budget.hold(self.size(item)):
            return fn(self.read(item))

    def prepared(self, item: Any, predictor: Predictor, limits: ImageLimits) -> tuple[Prepared, bool]:
        """(the row's model input or why it cannot be used, whether its file was read): a file that
        cannot be read (gone, changed, forbidden) is False, an image that does not decode is True."""
        try:
            return self.use(item, lambda data: prepare_image(data, predictor, limits)), True
        except SightQLError as exc:
            return str(exc), False
        except OSError as exc:
            return f"cannot read the file: {type(exc).__name__}: {exc}", False


# ---- decode ahead, run in batches --------------------------------------------------------------
def takes_encoded(predictor: Predictor) -> bool:
    """Whether ``predictor`` decodes images itself, from their bytes (``predict_encoded``: a GPU predictor,
    :mod:`sightql.models.torch.gpu`, decoding JPEGs on the GPU); then the pool only reads the bytes."""
    return bool(getattr(predictor, "takes_encoded", False)) and hasattr(predictor, "predict_encoded")


ENCODED_BATCHES_AHEAD = 2  # an engine batch for a predictor that decodes holds this many of its model batches


def encoded_batch_size(predictor: Predictor) -> int | None:
    """For a predictor that :func:`takes_encoded`, rows per engine batch: enough for its model batches to overlap
    decoding with compute (None for any other predictor: the caller's batch size stands)."""
    if not takes_encoded(predictor):
        return None
    return ENCODED_BATCHES_AHEAD * int(getattr(predictor, "max_batch_size", 0) or 128)


def prepare_image(data: bytes | None, predictor: Predictor, limits: ImageLimits) -> Prepared:
    """The model's input tensor for ``data``, or one sentence saying why this row cannot be read;
    for a predictor that :func:`takes_encoded`, the bytes themselves (it decodes, and reports bad ones)."""
    if isinstance(data, bytes) and takes_encoded(predictor):
        return data
    try:
        return preprocess(data, predictor.card.input, limits)
    except SightQLError as exc:
        return str(exc)
    except Exception as exc:  # a decoder bug must still only cost this row
        return f"cannot read image: {type(exc).__name__}: {exc}"


def _submit(fn: Callable[[I], X], items: Sequence[I], threads: int) -> tuple[int, list[Future]]:
    """Run ``fn`` over ``items`` in the pool as at most ``threads`` tasks (rows i, i + groups, ... in one task)."""
    pool = worker_pool(threads)
    groups = max(1, min(threads, len(items)))
    return groups, [pool.submit(lambda part: [fn(item) for item in part], items[g::groups]) for g in range(groups)]


def _gather(groups: int, futures: list[Future]) -> list[Any]:
    """The results of :func:`_submit`'s tasks, back in the items' order."""
    parts = [future.result() for future in futures]
    out: list[Any] = [None] * sum(len(part) for part in parts)
    for g, part in enumerate(parts):
        out[g::groups] = part
    return out


def parallel_map(fn: Callable[[I], X], items: Sequence[I], threads: int | None = None) -> list[X]:
    """``[fn(item) for item in items]`` in the worker pool, at most ``threads`` at once (training's decoding)."""
    return map_ahead(fn, items, threads)()


def map_ahead(fn: Callable[[I], X], items: Sequence[I], threads: int | None = None) -> Callable[[], list[X]]:
    """Start :func:`parallel_map` now and return a function that waits for its list (re-raising a task's
    error): training decodes the next batch while the model runs this one."""
    submitted = _submit(fn, items, _width(threads))
    return lambda: _gather(*submitted)


def run_batches(
    predictor: Predictor,
    batches: Iterable[tuple[B, Sequence[I]]],
    prepare: Callable[[I], tuple[Prepared, X]],
    threads: int | None = None,
) -> Iterator[tuple[B, list[RowResult], list[X]]]:
    """For each ``(tag, items)`` batch, in order: ``(tag, one RowResult per item, what prepare returned beside)``.

    The next batch is prepared in the pool (at most ``threads`` rows at once) while the model runs this one.
    """
    width = _width(threads)
    source = iter(batches)

    def submit() -> tuple[B, tuple[int, list[Future]]] | None:
        batch = next(source, None)
        return None if batch is None else (batch[0], _submit(prepare, batch[1], width))

    pending = submit()
    while pending is not None:
        tag, submitted = pending
        prepared: list[tuple[Prepared, X]] = _gather(*submitted)
        pending = submit()  # the next batch decodes while the model runs this one
        yield tag, run_batch(predictor, [item for item, _ in prepared]), [extra for _, extra in prepared]


def predict_rows(
    predictor: Predictor,
    images: Sequence[Any],
    *,
    batch_size: int = 32,
    limits: ImageLimits = ImageLimits(),
    threads: int | None = None,
    read: BudgetedRead | None = None,
) -> list[RowResult]:
    """Predict every row; returns one :class:`RowResult` per input, in order.

    ``images`` holds each row's bytes, or (with ``read``) what ``read`` turns into them in the
    pool, beside its decoding: a FILE value, say. Then only the batch being prepared (one ahead of
    the model's) is read, at most ``threads`` files at once and within the read budget; a row whose
    read fails gets the error.
    """

    def prepare(item: Any) -> tuple[Prepared, None]:
        if read is not None:
            return read.prepared(item, predictor, limits)[0], None
        return prepare_image(item, predictor, limits), None

    batches = ((start, images[start : start + batch_size]) for start in range(0, len(images), batch_size))
    results: list[RowResult] = []
    for _, rows, _ in run_batches(predictor, batches, prepare, threads):
        results.extend(rows)
    return results


def run_batch(predictor: Predictor, prepared: Sequence[Prepared]) -> list[RowResult]:
    """One model call over the readable rows; unreadable rows keep their reason, a failed call fails its rows.

    Rows prepared as bytes (a predictor that :func:`takes_encoded`) go to ``predict_encoded`` in one
    call, which gives each row its output or its error."""
    out: list[RowResult | None] = [RowResult(None, item) if isinstance(item, str) else None for item in prepared]
    arrays = [i for i, item in enumerate(prepared) if isinstance(item, np.ndarray)]
    encoded = [i for i, item in enumerate(prepared) if isinstance(item, bytes)]
    for rows, call in (
        (arrays, lambda: (predictor.predict(np.stack([prepared[i] for i in arrays])), None)),  # type: ignore[misc]
        (encoded, lambda: predictor.predict_encoded([prepared[i] for i in encoded])),  # type: ignore[attr-defined]
    ):
        if not rows:
            continue
        try:
            outputs, errors = call()
        except Exception as exc:
            message = f"model failed on this batch: {type(exc).__name__}: {exc}"
            for i in rows:
                out[i] = RowResult(None, message)
            continue
        for row, i in enumerate(rows):
            error = errors[row] if errors is not None else None
            out[i] = RowResult(None, error) if error else RowResult(outputs[row], None)
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
