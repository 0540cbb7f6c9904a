"""An open_clip folder (``open_clip_config.json`` + ``*.safetensors``) run with open_clip (PyTorch), offline.

The model is built from the folder's config alone (a temporary folder holding only the config, so
open_clip finds no checkpoint to choose by itself), then its weights are read from the folder's
safetensors file: a folder with only pickle weights (``*.bin``, ``*.pt``) is refused unless trusted.
The tokenizer is the one the config names: open_clip's own CLIP BPE (bundled with the package), or a
Hugging Face tokenizer, which must be available offline.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from sightql.errors import ConfigError, MissingDependencyError, UnsafeModelError
from sightql.models.card import ModelCard
from sightql.models.zero_shot.encoder import DualEncoder
from sightql.models.zero_shot.layouts import OPEN_CLIP_CONFIG

_PREFERRED = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "model.safetensors")
_PICKLES = ("*.bin", "*.pt", "*.pth")


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:
        raise MissingDependencyError("open_clip_torch", "zeroshot") from exc
    return open_clip


def weights_file(folder: Path, trust: bool) -> Path:
    """The folder's safetensors weights (by open_clip's preferred names first); a pickle only when trusted."""
    rank = {name: i for i, name in enumerate(_PREFERRED)}
    found = sorted(folder.glob("*.safetensors"), key=lambda p: (rank.get(p.name, len(rank)), p.name))
    if found:
        return found[0]
    pickles = sorted(p for pattern in _PICKLES for p in folder.glob(pattern))
    if pickles and trust:
        return pickles[0]
    if pickles:
        raise UnsafeModelError(
            f"{folder.name} has pickle weights ({pickles[0].name}) without *.safetensors, which run arbitrary Python "
            "code when loaded; convert them to safetensors or pass trust=True only if you trust its author"
        )
    raise ConfigError(f"{folder.name} has {OPEN_CLIP_CONFIG} but no weights; save open_clip_model.safetensors beside it")


class OpenClipEncoder(DualEncoder):
    """A loaded open_clip model (``encode_image`` / ``encode_text``) and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, card: ModelCard, device: str = "cpu"):
        super().__init__(card, float(model.logit_scale.exp().item()), device)
        self._model = model
        self._tokenizer = tokenizer
        self._run_lock = threading.Lock()

    def _image_features(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with self._run_lock, torch.inference_mode():
            return self._model.encode_image(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()

    def _text_features(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = self._tokenizer(texts)
        with self._run_lock, torch.inference_mode():
            return self._model.encode_text(tokens.to(self.device)).float().cpu().numpy()


def load_open_clip(folder: Path, card: ModelCard, device: str = "cpu", *, trust: bool = False) -> OpenClipEncoder:
    weights = weights_file(folder, trust)
    open_clip = _open_clip()
    root = logging.getLogger()
    level = root.level
    try:
        with tempfile.TemporaryDirectory(prefix="sightql-open-clip-") as config_only:
            shutil.copyfile(folder / OPEN_CLIP_CONFIG, Path(config_only) / OPEN_CLIP_CONFIG)
            root.setLevel(logging.ERROR)  # "no pretrained weights loaded": they are loaded next, from the folder
            model = open_clip.create_model(f"local-dir:{config_only}", device=device)
            tokenizer = open_clip.get_tokenizer(f"local-dir:{config_only}")
        open_clip.load_checkpoint(model, str(weights), device=device, weights_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"open_clip could not load {folder.name} ({first_line[:200]}); check its config and weights") from exc
    finally:
        root.setLevel(level)
    model.eval()
    return OpenClipEncoder(model, tokenizer, card, device)


__all__ = ["OpenClipEncoder", "load_open_clip", "weights_file"]
