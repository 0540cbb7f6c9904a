"""Adapter dispatch: the ONE place a framework name becomes a loaded predictor.

Every loader takes (version record, warehouse folder, resolved device, trust) and
re-hashes the file it actually opens, so a changed artifact is never run.
The same table is used when a model is logged (to check it) and when it is used.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

from sightql.errors import ConfigError
from sightql.models.base import LoadedModel, Predictor, TextModel
from sightql.models.keras.runtime import load_keras_predictor
from sightql.models.loader import GPU_MAX_BATCH, cached_predictor, version_key
from sightql.models.onnx.runtime import OnnxPredictor
from sightql.models.tensorflow.runtime import load_tensorflow_predictor
from sightql.models.text_embedder import load_text_embedder
from sightql.models.torch.files import load_module
from sightql.models.torch.gpu import TorchGpuPredictor
from sightql.models.torch.runtime import TorchPredictor
from sightql.models.zero_shot.hf_clip import load_hf_clip
from sightql.models.zero_shot.layouts import HF_CLIP, ONNX_DUAL, OPEN_CLIP
from sightql.models.zero_shot.onnx_pair import load_onnx_dual
from sightql.models.zero_shot.open_clip_folder import load_open_clip
from sightql.registry.artifacts import verify
from sightql.registry.records import VersionRecord

Loader = Callable[[VersionRecord, Path, str, bool], LoadedModel]


def load_onnx(record: VersionRecord, home: Path, device: str, trust: bool) -> Predictor:
    if device.startswith("cuda"):
        warnings.warn(f"{record.ref} is an ONNX model; it runs on the CPU with ONNX Runtime, not on {device}", stacklevel=2)
    path = verify(record.artifact(home), record.sha256, record.ref)
    return OnnxPredictor(path, record.card)


def derived_onnx_file(record: VersionRecord, home: Path) -> Path | None:
    """The ONNX file derived (and checked against the framework) at log time, its hash verified; None without one."""
    derived = record.derived_onnx(home)
    if derived is None or not record.derived_onnx_sha256:
        return None
    return verify(derived, record.derived_onnx_sha256, record.ref)


def _derived_onnx(record: VersionRecord, home: Path, device: str) -> Predictor | None:
    """On the CPU, the ONNX file derived (and checked against the framework) at log time, if there is one."""
    derived = derived_onnx_file(record, home) if device == "cpu" else None
    return None if derived is None else OnnxPredictor(derived, record.card)


def load_torch(record: VersionRecord, home: Path, device: str, trust: bool) -> Predictor:
    """CPU: the ONNX file derived (and checked against torch) at log time. CUDA: torch itself."""
    derived = _derived_onnx(record, home, device)
    if derived is not None:
        return derived
    options = record.options
    path = verify(record.artifact(home), record.sha256, record.ref)
    module = load_module(path, options["format"], options.get("architecture"), trusted=trust, device=device)
    if device.startswith("cuda"):  # the card's runtime: fp16 (autocast) or fp32; JPEGs decoded on the GPU
        return TorchGpuPredictor(module, record.card, device, fp16=record.card.runtime == "fp16", max_batch_size=GPU_MAX_BATCH)
    return TorchPredictor(module, record.card, device)


def load_keras(record: VersionRecord, home: Path, device: str, trust: bool) -> Predictor:
    """CPU: the ONNX file derived (and checked against Keras) at log time. CUDA, or no export: Keras."""
    derived = _derived_onnx(record, home, device)
    if derived is not None:
        return derived
    path = verify(record.artifact(home), record.sha256, record.ref)
    return load_keras_predictor(path, record.card, trust=trust, device=device)


def load_tensorflow(record: VersionRecord, home: Path, device: str, trust: bool) -> LoadedModel:
    """CPU: the ONNX file converted (and checked against TensorFlow) at log time. Otherwise (a text model,
    a failed conversion, or CUDA): the SavedModel through TensorFlow, calling the signature chosen at log time."""
    derived = _derived_onnx(record, home, device)
    if derived is not None:
        return derived
    folder = verify(record.artifact(home), record.sha256, record.ref)
    return load_tensorflow_predictor(folder, record.card, record.options, trust=trust, device=device)


def load_sentence_transformers(record: VersionRecord, home: Path, device: str, trust: bool) -> TextModel:
    """A sentence-transformers folder: text in, unit vectors out (``embed_text`` in SQL)."""
    folder = verify(record.artifact(home), record.sha256, record.ref)
    return load_text_embedder(folder, record.name, device=device, trust=trust)


def load_dual_encoder(record: VersionRecord, home: Path, device: str, trust: bool) -> Predictor:
    """A zero-shot dual encoder: a Hugging Face CLIP folder through transformers, an open_clip folder through
    open_clip, or an ONNX pair on the CPU."""
    folder = verify(record.artifact(home), record.sha256, record.ref)
    if record.framework == HF_CLIP:
        return load_hf_clip(folder, record.card, device, trust=trust)
    if record.framework == OPEN_CLIP:
        return load_open_clip(folder, record.card, device, trust=trust)
    if device.startswith("cuda"):
        warnings.warn(f"{record.ref} is an ONNX dual encoder; it runs on the CPU with ONNX Runtime, not on {device}", stacklevel=2)
    return load_onnx_dual(folder, record.card)


LOADERS: dict[str, Loader] = {
    "onnx": load_onnx,
    "torch": load_torch,
    "keras": load_keras,
    "sentence-transformers": load_sentence_transformers,
    "tensorflow": load_tensorflow,
    HF_CLIP: load_dual_encoder,
    OPEN_CLIP: load_dual_encoder,
    ONNX_DUAL: load_dual_encoder,
}
FRAMEWORKS = tuple(LOADERS)


def cached_version(record: VersionRecord, home: Path, device: str) -> LoadedModel:
    """``record`` loaded through the process's one model cache (models.loader), keyed by its exact
    version, hashes and the resolved ``device``: loaded and its sha256 checked once per process."""
    key = version_key(str(home), record.ref, record.sha256, record.derived_onnx_sha256, device)
    return cached_predictor(key, lambda: load_version(record, home, device))


def load_version(record: VersionRecord, home: Path, device: str) -> LoadedModel:
    """The loaded model of one exact version; trust is what was recorded when it was logged."""
    loader = LOADERS.get(record.framework)
    if loader is None:
        raise ConfigError(
            f"{record.ref} was logged with framework {record.framework!r}, which this build cannot load; "
            f"known frameworks: {', '.join(FRAMEWORKS)}"
        )
    predictor = loader(record, home, device, record.trusted)
    try:
        predictor.model_version = record.ref
    except AttributeError:
        pass
    return predictor
