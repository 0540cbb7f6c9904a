"""The bodies of the SQL functions over images and text (registered by :mod:`sightql.functions.register`).

Each function is an Arrow UDF: DuckDB hands it up to 2,048 rows at a time, and
it runs them through the model in full batches, decoding beside the model.
An image is a BLOB or a FILE value (:mod:`sightql.functions.image_args`): the same body
serves both, a FILE's bytes being read a batch at a time beside decoding; a file that is
missing, forbidden or changed since the value was made gives that row its error.
Every row is caught on its own: a bad image gives that row NULL plus an
error message, never a failed query (unless the session is strict).
A model given to the wrong function (a text model to ``embed``, an image model
to ``embed_text``) fails the query with one sentence naming the right function.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from duckdb import sqltypes as T

from sightql.engine import encoded_batch_size, BudgetedRead, RowResult, best_label, parallel_map, predict_rows, read_budget, top_labels, worker_pool
from sightql.errors import ImageError, SightQLError, StageError
from sightql.functions.image_args import chosen_file_refs, is_file_column
from sightql.images.decode import probe_image
from sightql.models.base import Predictor, TextModel
from sightql.models.features import FEATURES_OF, imagenet_features
from sightql.registry import Registry
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.stages.files import STAGE_READERS, file_reads


# The task stored in sightql_functions for a function over a text model: ``fn(text) -> FLOAT[]``.
TEXT_EMBEDDING = "text-embedding"

LABEL_SCORE = pa.struct([("label", pa.string()), ("score", pa.float64())])
CLASSIFY_ARROW = pa.struct([("label", pa.string()), ("score", pa.float64()), ("error", pa.string())])
INFO_ARROW = pa.struct(
    [("width", pa.int32()), ("height", pa.int32()), ("format", pa.string()), ("mode", pa.string()), ("error", pa.string())]
)


def sql_types() -> dict[str, Any]:
    """The DuckDB return type of each function (classify, topk, embed, info)."""
    label_score = duckdb.struct_type({"label": T.VARCHAR, "score": T.DOUBLE})
    return {
        "classify": duckdb.struct_type({"label": T.VARCHAR, "score": T.DOUBLE, "error": T.VARCHAR}),
        "topk": duckdb.list_type(label_score),
        "embed": duckdb.list_type(T.FLOAT),
        "info": duckdb.struct_type(
            {"width": T.INTEGER, "height": T.INTEGER, "format": T.VARCHAR, "mode": T.VARCHAR, "error": T.VARCHAR}
        ),
    }


class RowsOf(Sequence):
    """Chosen rows of an Arrow column, turned into Python values one slice at a time.

    DuckDB hands a UDF up to 2,048 images at once; copying them all into Python
    bytes up front would double that chunk's memory, so batches read only theirs.
    """

    def __init__(self, column: pa.ChunkedArray, rows: list[int]):
        self._column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self._column[self._rows[j]].as_py() for j in range(*index.indices(len(self._rows)))]
        return self._column[self._rows[index]].as_py()


class ImageFunctions:
    """The UDF bodies, bound to one warehouse (its settings and limits), its registry and its stages."""

    def __init__(self, warehouse: Warehouse, registry: Registry, stages: StageCatalog):
        self.warehouse = warehouse
        self.registry = registry
        self.stages = stages

    # ---- helpers --------------------------------------------------------------
    def _by_model(
        self, models: pa.ChunkedArray, images: pa.ChunkedArray, features: bool = False
    ) -> list[tuple[RowResult, Predictor | None]]:
        """Run each row through the model its row names; usually one model per query.

        Each reference is resolved once per call, and every row comes back with the
        predictor that answered it, so its labels are that exact version's even if an
        alias moves meanwhile.
        """
        names = models.to_pylist()
        results: list[tuple[RowResult, Predictor | None] | None] = [None] * len(names)
        for name in dict.fromkeys(names):
            rows = [i for i, n in enumerate(names) if n == name]
            if name is None:
                for i in rows:
                    results[i] = (RowResult(None, "no model named (the model argument is NULL)"), None)
                continue
            predictor = self.embedding_model(name) if features else self._image_model(name)
            items, read = self._images(images, rows)
            outputs = predict_rows(
                predictor,
                items,
                batch_size=encoded_batch_size(predictor) or self.warehouse.settings.batch_size,
                limits=self.warehouse.limits,
                threads=self.warehouse.settings.decode_threads,
                read=read,
            )
            for i, result in zip(rows, outputs):
                results[i] = (result, predictor)
        self._raise_if_strict([r for r, _ in results])  # type: ignore[misc]
        return results  # type: ignore[return-value]

    def _images(self, images: pa.ChunkedArray, rows: list[int]) -> tuple[Sequence[Any], BudgetedRead | None]:
        """The chosen rows of an image column, and how to turn one into bytes within the process's
        read budget (None: they are bytes)."""
        if is_file_column(images):
            budget = read_budget(self.warehouse.settings.read_budget_bytes)
            return chosen_file_refs(images, rows), file_reads(self.stages.get, budget)
        return RowsOf(images, rows), None

    def _raise_if_strict(self, results: list[Any]) -> None:
        if self.warehouse.on_error == "raise":
            for result in results:
                if result is not None and result.error is not None:
                    raise ImageError(result.error)

    def _image_model(self, name: str) -> Predictor:
        model = self.registry.predictor(name)
        if model.card.modality == "text":
            raise SightQLError(f"{name!r} reads text; use embed_text(model, text)")
        return model  # type: ignore[return-value]

    def embedding_model(self, name: str) -> Predictor:
        """What ``embed(name, image)`` runs: the bundled model's pooled features, else the model itself."""
        if name in FEATURES_OF:
            return imagenet_features(self.warehouse.models_dir, self.warehouse.device)  # type: ignore[return-value]
        return self._image_model(name)

    def _text_model(self, name: str) -> TextModel:
        model = self.registry.predictor(name)
        if model.card.modality != "text" and model.card.task != "zero-shot":  # a dual encoder reads both
            raise SightQLError(f"{name!r} reads images; use embed(model, image)")
        return model  # type: ignore[return-value]

    @staticmethod
    def _labels(name: str, predictor: Predictor) -> tuple[str, ...]:
        labels = predictor.card.labels
        if predictor.card.task == "zero-shot":
            raise SightQLError(
                f"{name!r} is a zero-shot model with no fixed labels; use classify_labels(model, image, ['label', ...])"
            )
        if not labels:
            raise SightQLError(f"model {name!r} has no labels, so it cannot classify; use embed() instead")
        return labels

    # ---- classify(model, image) -> STRUCT(label, score, error) -----------------
    def classify(self, models: pa.ChunkedArray, images: pa.ChunkedArray) -> pa.Array:
        names = models.to_pylist()
        rows = []
        for name, (result, predictor) in zip(names, self._by_model(models, images)):
            if result.output is None:
                rows.append({"label": None, "score": None, "error": result.error})
            else:
                label, score = best_label(result.output, self._labels(name, predictor))  # type: ignore[arg-type]
                rows.append({"label": label, "score": score, "error": None})
        return pa.array(rows, type=CLASSIFY_ARROW)

    # ---- classify_topk(model, image, k) -> LIST(STRUCT(label, score)) ----------
    def classify_topk(self, models: pa.ChunkedArray, images: pa.ChunkedArray, ks: pa.ChunkedArray) -> pa.Array:
        names = models.to_pylist()
        rows: list[list[dict[str, Any]] | None] = []
        for name, k, (result, predictor) in zip(names, ks.to_pylist(), self._by_model(models, images)):
            if result.output is None:
                rows.append(None)
                continue
            if k is None or k < 1:
                raise SightQLError(f"classify_topk needs k >= 1, got {k}; pass e.g. 5")
            rows.append(top_labels(result.output, self._labels(name, predictor), int(k)))  # type: ignore[arg-type]
        return pa.array(rows, type=pa.list_(LABEL_SCORE))

    # ---- embed(model, image) -> FLOAT[] ------------------------------------------
    def embed(self, models: pa.ChunkedArray, images: pa.ChunkedArray) -> pa.Array:
        """The model's output vector: features for an embedding model and for the bundled 'imagenet' (its
        1,280 pooled features, unit length), probabilities for a registered classifier."""
        rows = [None if r.output is None else r.output.astype(np.float32)
                for r, _ in self._by_model(models, images, features=True)]
        return pa.array(rows, type=pa.list_(pa.float32()))

    # ---- embed_text(model, text) -> FLOAT[] ----------------------------------------
    def embed_text(self, models: pa.ChunkedArray, texts: pa.ChunkedArray) -> pa.Array:
        """A text model's unit vector per row, all rows of one model in one call; NULL text gives NULL."""
        names = models.to_pylist()
        values = texts.to_pylist()
        rows: list[np.ndarray | None] = [None] * len(values)
        for name in dict.fromkeys(names):
            if name is None:
                continue
            model = self._text_model(name)
            wanted = [i for i, (n, text) in enumerate(zip(names, values)) if n == name and text is not None]
            for i, vector in zip(wanted, self._embed_texts(model, [values[i] for i in wanted])):
                rows[i] = vector
        return pa.array(rows, type=pa.list_(pa.float32()))

    def _embed_texts(self, model: TextModel, texts: Sequence[str]) -> list[np.ndarray | None]:
        """All texts in one batch; if that fails, one by one, so only the failing rows get NULL."""
        if not texts:
            return []
        try:
            return list(model.embed_texts(texts))
        except Exception:
            if self.warehouse.on_error == "raise":
                raise
        vectors: list[np.ndarray | None] = []
        for text in texts:
            try:
                vectors.append(model.embed_texts([text])[0])
            except Exception:
                vectors.append(None)
        return vectors

    # ---- functions made with create_function (sightql.functions.named) ------------------------------
    def bound_to(self, ref: str, task: str) -> Any:
        """``fn(image)`` calling classify or embed (``fn(text)`` calling embed_text) with a fixed model reference."""
        method = {"embedding": self.embed, TEXT_EMBEDDING: self.embed_text}.get(task, self.classify)

        def call(values: pa.ChunkedArray) -> pa.Array:
            return method(pa.chunked_array([pa.array([ref] * len(values), pa.string())]), values)

        return call

    # ---- image_info(image) -> STRUCT(width, height, format, mode, error) -------
    def image_info(self, images: pa.ChunkedArray) -> pa.Array:
        """Each image's header, a batch at a time (a FILE's bytes read in the pool, then let go)."""
        items, read = self._images(images, list(range(len(images))))
        settings = self.warehouse.settings

        def info(item: Any) -> dict[str, Any]:
            try:
                probe = partial(probe_image, limits=self.warehouse.limits)
                header = probe(item) if read is None else read.use(item, probe)
                return {**header._asdict(), "error": None}
            except (ImageError, StageError) as exc:  # a FILE's read fails as a StageError
                if self.warehouse.on_error == "raise":
                    raise
                return {"width": None, "height": None, "format": None, "mode": None, "error": str(exc)}

        rows: list[dict[str, Any]] = []
        for start in range(0, len(items), settings.batch_size):
            rows.extend(parallel_map(info, items[start : start + settings.batch_size], settings.decode_threads))
        return pa.array(rows, type=INFO_ARROW)

    # ---- stage_file(stage, relative_path) -> BLOB -------------------------------
    def stage_file(self, stages: pa.ChunkedArray, paths: pa.ChunkedArray) -> pa.Array:
        """Each row's staged file. Stages are looked up in the session's memory, never by a query
        (this runs inside the caller's query); a missing or forbidden path gives that row NULL."""
        pairs = list(zip(stages.to_pylist(), paths.to_pylist()))

        def read(pair: tuple[str | None, str | None]) -> bytes | None:
            stage_name, path = pair
            if stage_name is None or path is None:
                return None
            try:
                return self.stages.get(stage_name.lstrip("@")).read_bytes(path)
            except SightQLError:
                if self.warehouse.on_error == "raise":
                    raise
                return None

        pool = worker_pool(max(STAGE_READERS, self.warehouse.settings.decode_threads))
        return pa.array(list(pool.map(read, pairs)), type=pa.binary())
