"""The streaming pipeline: chunks of (row key, image bytes) in, one result table per chunk out.

Decoding and preprocessing run in the batch engine (:mod:`sightql.engine`), one batch ahead
of the model, across chunk boundaries; the model always gets full batches
(only the last batch of a chunk may be short). Memory stays bounded: at most two batches
of decoded tensors and the chunks whose rows are still in flight are held.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from sightql.engine import BudgetedRead, Prepared, RowResult, best_label, prepare_image, run_batches, top_labels
from sightql.images.decode import ImageLimits
from sightql.models.base import Predictor

TOP_K_ARROW = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))


def result_schema(key_type: pa.DataType) -> pa.Schema:
    """What a runner hands the writer for each chunk; model_version and predicted_at are added on write."""
    return pa.schema(
        [
            ("key", key_type),
            ("predicted_label", pa.string()),
            ("confidence", pa.float64()),
            ("top_k", TOP_K_ARROW),
            ("prediction_error", pa.string()),
            ("predicted_sha256", pa.string()),
        ]
    )


@dataclass(frozen=True)
class PredictOptions:
    """How to run the model over rows: picklable, so Dask workers get the same settings."""

    batch_size: int = 32
    top_k: int = 0
    limits: ImageLimits = ImageLimits()
    decode_threads: int | None = None
    read_budget_bytes: int | None = None  # the process's read budget (engine.ReadBudget); None: as it is


@dataclass
class Chunk:
    """Rows to predict: keys, and image bytes (an Arrow binary array or a list; None is a missing image),
    or, with ``read``, values it turns into bytes where each row is decoded (FILE values)."""

    keys: pa.Array
    images: Any  # pa.BinaryArray | Sequence[bytes | None] | Sequence[FileRef | None] (with ``read``)
    sha256: Sequence[str | None] | None = None  # known hashes of the bytes, else computed here
    read_errors: Sequence[str | None] | None = None  # why a row's bytes could not be read (stages)
    read: BudgetedRead | None = None  # reads ``images``' values within the process's read budget

    def __len__(self) -> int:
        return len(self.keys)

    def image(self, index: int) -> bytes | None:
        value = self.images[index]
        return value.as_py() if isinstance(value, pa.Scalar) else value


def _prepare_row(chunk: Chunk, index: int, predictor: Predictor, limits: ImageLimits) -> tuple[Prepared, str | None]:
    data = chunk.image(index)
    if data is None and chunk.read_errors is not None and chunk.read_errors[index]:
        return chunk.read_errors[index], None  # type: ignore[return-value]
    if chunk.read is not None:  # a FILE row: read here, in the pool; a row whose file cannot be read keeps no hash
        prepared, was_read = chunk.read.prepared(data, predictor, limits)
        return prepared, (chunk.sha256[index] if chunk.sha256 is not None and was_read else None)
    if chunk.sha256 is not None:
        sha = chunk.sha256[index]
    else:
        sha = hashlib.sha256(data).hexdigest() if data is not None else None
    return prepare_image(data, predictor, limits), sha


def stream_results(predictor: Predictor, chunks: Iterable[Chunk], options: PredictOptions) -> Iterator[pa.Table]:
    """One result table (see :func:`result_schema`) per non-empty input chunk, in order."""
    for chunk, rows, hashes in stream_rows(predictor, chunks, options):
        yield results_table(predictor, chunk.keys, rows, hashes, options.top_k)


def stream_rows(
    predictor: Predictor, chunks: Iterable[Chunk], options: PredictOptions
) -> Iterator[tuple[Chunk, list[RowResult], list[str | None]]]:
    """Per non-empty input chunk, in order: the chunk, each row's raw model output (or error) and the hash
    (or FILE identity) it was made from; :func:`stream_results` shapes them as labels, image search as vectors."""
    size = options.batch_size

    def batches() -> Iterator[tuple[tuple[Chunk, int], list[tuple[Chunk, int]]]]:
        for chunk in chunks:
            for start in range(0, len(chunk), size):
                stop = min(len(chunk), start + size)
                yield (chunk, stop), [(chunk, i) for i in range(start, stop)]

    def prepare(item: tuple[Chunk, int]) -> tuple[Prepared, str | None]:
        return _prepare_row(item[0], item[1], predictor, options.limits)

    rows: list[RowResult] = []
    hashes: list[str | None] = []
    for (chunk, stop), results, shas in run_batches(predictor, batches(), prepare, options.decode_threads):
        rows.extend(results)
        hashes.extend(shas)
        if stop == len(chunk):
            yield chunk, rows, hashes
            rows, hashes = [], []


def predict_chunk(predictor: Predictor, chunk: Chunk, options: PredictOptions) -> pa.Table:
    """The result table of one chunk (what a Dask worker runs per key range)."""
    tables = list(stream_results(predictor, [chunk], options))
    return tables[0] if tables else pa.Table.from_batches([], result_schema(chunk.keys.type))


def results_table(
    predictor: Predictor, keys: pa.Array, rows: Sequence[RowResult], hashes: Sequence[str | None], top_k: int
) -> pa.Table:
    labels = predictor.card.labels
    label_values: list[str | None] = []
    confidences: list[float | None] = []
    tops: list[list[dict[str, Any]] | None] = []
    for result in rows:
        if result.output is None:
            label_values.append(None)
            confidences.append(None)
            tops.append(None)
            continue
        label, score = best_label(result.output, labels)
        label_values.append(label)
        confidences.append(score)
        tops.append(top_labels(result.output, labels, top_k) if top_k > 0 else None)
    schema = result_schema(keys.type)
    return pa.table(
        [
            keys,
            pa.array(label_values, pa.string()),
            pa.array(confidences, pa.float64()),
            pa.array(tops, TOP_K_ARROW),
            pa.array([r.error for r in rows], pa.string()),
            pa.array(list(hashes), pa.string()),
        ],
        schema=schema,
    )
