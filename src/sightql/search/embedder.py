"""The model an index embeds with, and a query turned into a vector in the index's space.

``'imagenet'`` embeds with the bundled network's pooled features (:mod:`sightql.models.features`);
any other reference is a registry model whose output is the vector (an embedding model, or a zero-shot
dual encoder whose image side gives the vector). A query is an image (bytes, a local file, a stage
file ``'@stage/path'``, a FILE value) or, for an index built by a model with ``embed_texts`` (a zero-shot
model), a text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sightql.engine import predict_rows, read_budget
from sightql.errors import ConfigError, ImageError
from sightql.models.base import Predictor
from sightql.models.features import FEATURES_OF, features_version, imagenet_features
from sightql.registry import Registry
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.stages.files import FileRef, file_reads
from sightql.stages.paths import split_stage_ref

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif", ".avif", ".dcm")


class TextQuery(str):
    """A query that is a text, never a file name: what SQL's VARCHAR query is (SQL reads no local file by name)."""


@dataclass(frozen=True)
class IndexModel:
    """A loaded model and the exact version its vectors are recorded under."""

    ref: str
    predictor: Predictor
    model_version: str

    def dimension(self) -> int:
        """How many numbers the model gives per image (one forward pass over a blank image)."""
        blank = np.zeros(self.predictor.card.input.shape(1), dtype=np.float32)
        return int(np.asarray(self.predictor.predict(blank)).reshape(1, -1).shape[1])

    @property
    def reads_text(self) -> bool:
        return callable(getattr(self.predictor, "embed_texts", None))


def index_model(warehouse: Warehouse, registry: Registry, ref: str) -> IndexModel:
    """The model ``ref`` names now, resolved once (an alias moved later changes nothing until the next refresh)."""
    if not isinstance(ref, str) or not ref:
        raise ConfigError(f"model must be a reference such as 'imagenet' or 'clip@prod', not {ref!r}")
    if ref in FEATURES_OF:
        return IndexModel(ref, imagenet_features(warehouse.models_dir, warehouse.device), features_version(ref))  # type: ignore[arg-type]
    spec = registry.spec(ref)
    predictor = registry.predictor(spec.model_version)
    if predictor.card.modality == "text":
        raise ConfigError(f"{spec.model_version} reads text, not images; index images with 'imagenet' or a zero-shot model")
    return IndexModel(ref, predictor, spec.model_version)  # type: ignore[arg-type]


def text_refusal(model_ref: str, table: str) -> str:
    return (f"text search needs an index built with a zero-shot model, e.g. session.create_index({table!r}, "
            f"model='clip') with a model logged as task='zero-shot'; the index of {table!r} uses {model_ref!r}")


def embed_images(warehouse: Warehouse, model: IndexModel, images: list[Any], read: Any = None) -> np.ndarray:
    """One vector per image (bytes, or FILE values with ``read``), through the one engine; a bad image is
    one sentence."""
    settings = warehouse.settings
    results = predict_rows(model.predictor, images, batch_size=settings.batch_size, limits=warehouse.limits,
                           threads=settings.decode_threads, read=read)
    for result in results:
        if result.output is None:
            raise ImageError(f"the query image cannot be used: {result.error}")
    return np.stack([np.asarray(r.output, dtype=np.float32).reshape(-1) for r in results])


def query_vector(warehouse: Warehouse, stages: StageCatalog, model: IndexModel, table: str, query: Any) -> np.ndarray:
    """The vector of ``query``: bytes, a local image file, '@stage/path', a FILE value (a FileRef or its dict),
    or a text (an index by a zero-shot model only)."""
    if isinstance(query, (bytes, bytearray, memoryview)):
        return embed_images(warehouse, model, [bytes(query)])[0]
    if isinstance(query, dict) and "relative_path" in query:
        query = FileRef.from_row(query)
    if isinstance(query, FileRef):
        read = file_reads(stages.get, read_budget(warehouse.settings.read_budget_bytes))
        return embed_images(warehouse, model, [query], read)[0]
    if isinstance(query, Path):
        return embed_images(warehouse, model, [_local_file(query)])[0]
    if isinstance(query, TextQuery):
        return text_vector(model, table, query)
    if not isinstance(query, str) or not query.strip():
        raise ConfigError(f"the query must be image bytes, a file path, '@stage/path', a FILE value or a text, not {query!r}")
    if query.startswith("@"):
        name, path = split_stage_ref(query)
        return embed_images(warehouse, model, [stages.get(name).read_bytes(path)])[0]
    if Path(query).expanduser().is_file() or query.lower().endswith(IMAGE_SUFFIXES):
        return embed_images(warehouse, model, [_local_file(Path(query))])[0]
    return text_vector(model, table, query)


def text_vector(model: IndexModel, table: str, text: str) -> np.ndarray:
    if not model.reads_text:
        raise ConfigError(text_refusal(model.ref, table))
    return np.asarray(model.predictor.embed_texts([text]), dtype=np.float32).reshape(1, -1)[0]  # type: ignore[attr-defined]


def _local_file(path: Path) -> bytes:
    path = path.expanduser()
    if not path.is_file():
        raise ConfigError(f"no image file at {str(path)!r}; pass an existing file, '@stage/path' or image bytes")
    return path.read_bytes()
