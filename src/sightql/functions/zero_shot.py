"""``classify_labels(model, image, labels [, templates])``: zero-shot labels from a dual encoder, in SQL.

Each row's image goes through the one batch engine (``predict`` of a dual encoder is its unit image
vector), then gets the softmax over its labels of ``logit_scale * cosine`` with the label vectors.
The label texts (each label in each prompt template, averaged per label as CLIP does) are embedded
once per loaded model and kept in-process (:meth:`sightql.models.zero_shot.encoder.DualEncoder.label_vectors`),
so a query over many rows, or many queries, embed them once. A bad image gives its row NULLs and
the error; a wrong model or label list fails the query with one sentence.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from duckdb import sqltypes as T

from sightql.engine import RowResult, predict_rows, read_budget
from sightql.errors import ConfigError, ImageError, ModelNotFoundError, SightQLError
from sightql.functions.image_args import COMMON, chosen_file_refs, is_file_column, udf_names
from sightql.functions.image_functions import LABEL_SCORE, RowsOf
from sightql.models.zero_shot.encoder import DualEncoder, check_labels, check_templates
from sightql.models.loader import describe_builtins
from sightql.registry import Registry
from sightql.registry.specs import load_model
from sightql.registry.zero_shot import HOW_TO_LOG, ZERO_SHOT
from sightql.sql.file_type import FILE_SQL
from sightql.sql.identifiers import quote_ident
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.stages.files import file_reads

SQL_NAME = "classify_labels"
CLASSIFY_LABELS_ARROW = pa.struct(
    [("label", pa.string()), ("score", pa.float64()), ("scores", pa.list_(LABEL_SCORE)), ("error", pa.string())]
)


def classify_labels_type() -> Any:
    label_score = duckdb.struct_type({"label": T.VARCHAR, "score": T.DOUBLE})
    return duckdb.struct_type(
        {"label": T.VARCHAR, "score": T.DOUBLE, "scores": duckdb.list_type(label_score), "error": T.VARCHAR}
    )


def classify_labels_macro() -> str:
    """The TEMP macro: (model, image BLOB | FILE | VARCHAR, labels VARCHAR[] [, templates VARCHAR[]])."""
    blob, file = udf_names(SQL_NAME)
    overloads = []
    for image_type, udf, image in (("BLOB", blob, "image"), (FILE_SQL, file, "image"), ("VARCHAR", blob, "image::BLOB")):
        head = f"model VARCHAR, image {image_type}, labels VARCHAR[]"
        overloads.append(f"({head}) AS {quote_ident(udf)}(model, {image}, labels, NULL::VARCHAR[])")
        overloads.append(f"({head}, templates VARCHAR[]) AS {quote_ident(udf)}(model, {image}, labels, templates)")
    return f"CREATE OR REPLACE TEMP MACRO {quote_ident(SQL_NAME)}" + ", ".join(overloads)


def no_zero_shot_model(registry: Registry, asked: str | None) -> str:
    """What to say when ``asked`` is no zero-shot model: the ones registered, or how to log one."""
    known = [ref for ref in registry.refs(ZERO_SHOT) if "@" not in ref]
    if known:
        return f"zero-shot models registered: {', '.join(known)}"
    return f"no zero-shot model is registered; log a CLIP-style dual encoder with: {HOW_TO_LOG}"


class ZeroShotFunctions:
    """The body of ``classify_labels``, bound to one warehouse, its registry and its stages."""

    def __init__(self, warehouse: Warehouse, registry: Registry, stages: StageCatalog):
        self.warehouse = warehouse
        self.registry = registry
        self.stages = stages

    def encoder(self, name: str) -> DualEncoder:
        """The loaded zero-shot model ``name`` names; one sentence if it names none or another kind of model."""
        try:
            spec = self.registry.spec(name)
        except ModelNotFoundError as exc:
            known = no_zero_shot_model(self.registry, name)
            if known.startswith("no zero-shot model"):
                raise ModelNotFoundError(f"{known} (classify_labels was given {name!r})") from None
            raise ModelNotFoundError(f"{exc}; {known}") from None
        # The task is told from the record (or the built-in's description), so a wrong model is never loaded.
        if spec.record is not None:
            task = spec.record.task
        else:
            task = next(b["task"] for b in describe_builtins() if b["name"] == spec.builtin)
        if task != ZERO_SHOT:
            raise ConfigError(
                f"{name!r} is a{'n' if task[0] in 'aeiou' else ''} {task} model, not a zero-shot one, so classify_labels "
                f"cannot use it; {no_zero_shot_model(self.registry, name)}"
            )
        return load_model(spec)  # type: ignore[return-value]

    def _images(self, images: pa.ChunkedArray, rows: list[int]) -> tuple[Sequence[Any], Any]:
        if is_file_column(images):
            budget = read_budget(self.warehouse.settings.read_budget_bytes)
            return chosen_file_refs(images, rows), file_reads(self.stages.get, budget)
        return RowsOf(images, rows), None

    def classify_labels(
        self, models: pa.ChunkedArray, images: pa.ChunkedArray, labels: pa.ChunkedArray, templates: pa.ChunkedArray
    ) -> pa.Array:
        names, label_rows, template_rows = models.to_pylist(), labels.to_pylist(), templates.to_pylist()
        out: list[dict[str, Any] | None] = [None] * len(names)
        for name in dict.fromkeys(names):
            rows = [i for i, n in enumerate(names) if n == name]
            if name is None:
                for i in rows:
                    out[i] = self._failed("no model named (the model argument is NULL)")
                continue
            encoder = self.encoder(name)
            groups: dict[tuple[tuple[str, ...], tuple[str, ...] | None], list[int]] = {}
            for i in rows:  # every label list is checked before any image is read
                chosen = check_labels(label_rows[i])
                asked = None if template_rows[i] is None else check_templates(template_rows[i])
                groups.setdefault((chosen, asked), []).append(i)
            items, read = self._images(images, rows)
            settings = self.warehouse.settings
            results = dict(zip(rows, predict_rows(
                encoder, items, batch_size=settings.batch_size, limits=self.warehouse.limits,
                threads=settings.decode_threads, read=read,
            )))
            for (chosen, asked), members in groups.items():
                self._score(encoder, chosen, asked, [(i, results[i]) for i in members], out)
        return pa.array(out, type=CLASSIFY_LABELS_ARROW)

    def _score(
        self, encoder: DualEncoder, labels: tuple[str, ...], templates: tuple[str, ...] | None,
        rows: list[tuple[int, RowResult]], out: list[dict[str, Any] | None],
    ) -> None:
        good = [(i, r.output) for i, r in rows if r.output is not None]
        for i, result in rows:
            if result.output is None:
                if self.warehouse.on_error == "raise":
                    raise ImageError(result.error)
                out[i] = self._failed(result.error)
        if not good:
            return
        scores = encoder.label_scores(np.stack([vector for _, vector in good]), labels, templates)
        for (i, _), row in zip(good, scores):
            best = int(np.argmax(row))
            out[i] = {
                "label": labels[best], "score": float(row[best]), "error": None,
                "scores": [{"label": label, "score": float(s)} for label, s in zip(labels, row)],
            }

    @staticmethod
    def _failed(error: str | None) -> dict[str, Any]:
        return {"label": None, "score": None, "scores": None, "error": error}


def register_zero_shot(con: Any, warehouse: Warehouse, registry: Registry, stages: StageCatalog) -> ZeroShotFunctions:
    """``classify_labels`` on ``con``: two UDFs (BLOB and FILE images) under one TEMP macro."""
    funcs = ZeroShotFunctions(warehouse, registry, stages)
    labels = duckdb.list_type(T.VARCHAR)
    for udf, image_type in zip(udf_names(SQL_NAME), ("BLOB", FILE_SQL)):
        con.create_function(udf, funcs.classify_labels, [T.VARCHAR, duckdb.sqltype(image_type), labels, labels],
                            classify_labels_type(), **COMMON)
    con.execute(classify_labels_macro())
    return funcs


def classify_labels_images(
    warehouse: Warehouse, registry: Registry, images: Sequence[bytes], labels: Sequence[str], model: str | None,
    templates: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """``classify_labels`` over images given as bytes, through the SQL function queries use (Session.classify_labels).

    ``model`` is resolved once, to the exact version that answers every image; None picks the one zero-shot
    model registered."""
    if model is None:
        known = [ref for ref in registry.refs(ZERO_SHOT) if "@" not in ref]
        if len(known) != 1:
            if not known:
                raise ModelNotFoundError(no_zero_shot_model(registry, None))
            raise ConfigError(f"several zero-shot models are registered ({', '.join(known)}); choose one with model=")
        model = known[0]
    exact = registry.spec(model).model_version
    checked = check_labels(labels)
    chosen = None if templates is None else list(check_templates(templates))
    table = pa.table({"i": list(range(len(images))), "image": pa.array(list(images), pa.binary())})
    view = f"_sightql_classify_labels_{uuid.uuid4().hex}"
    con = warehouse.connection()
    con.register(view, table)
    try:
        call = "classify_labels($model, image, $labels" + (", $templates)" if chosen is not None else ")")
        params: dict[str, Any] = {"model": exact, "labels": list(checked)}
        if chosen is not None:
            params["templates"] = chosen
        rows = warehouse.sql(f"SELECT {call} AS r FROM {quote_ident(view)} ORDER BY i", params).to_pylist()
    finally:
        con.unregister(view)
    return [{**row["r"], "model_version": exact} for row in rows]


__all__ = ["CLASSIFY_LABELS_ARROW", "ZeroShotFunctions", "classify_labels_images", "register_zero_shot"]
