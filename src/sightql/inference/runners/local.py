"""The local runner: one process, chunks read in a background thread, decode beside the model."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import pyarrow as pa

from sightql.inference.pipeline import stream_results
from sightql.inference.plan import PredictPlan, stage_chunks, table_chunks
from sightql.inference.source import TableSource
from sightql.registry.specs import load_model

T = TypeVar("T")
_DONE = object()


@dataclass(frozen=True)
class LocalRunner:
    """This process: chunks read one ahead in a background thread, decoded in the engine's pool beside the model."""

    name: ClassVar[str] = "local"

    def run(self, plan: PredictPlan) -> Iterator[pa.Table]:
        """Result tables, one per chunk, in the source's order."""
        predictor = load_model(plan.spec)
        chunks = table_chunks(plan) if isinstance(plan.source, TableSource) else stage_chunks(plan)
        yield from stream_results(predictor, prefetch(chunks, depth=1), plan.options)


def prefetch(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Pull ``items`` in a background thread, at most ``depth`` ahead, so reading overlaps the model.

    Not the engine's pool: this thread reads the warehouse (holding the plan's ``db_lock``) for the
    whole run, while the pool's threads decode the rows already read (:func:`sightql.engine.run_batches`)."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def pull() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            slots.put(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=pull, name="sightql-predict-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                slots.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.1)
