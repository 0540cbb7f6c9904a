"""A Hugging Face CLIP folder run with transformers (PyTorch), offline and from safetensors only.

Nothing is fetched: the folder is read with ``local_files_only``, never with remote code. Weights
only in pickle form (``pytorch_model.bin``) are refused unless trusted, and without trust
transformers must read safetensors. It runs through PyTorch rather than an ONNX export: CLIP's two
towers and its tokenizer would need two exports and their checks at every log, for a model that is
logged rarely and used mostly with small label lists.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from sightql.errors import ConfigError, UnsafeModelError
from sightql.models import quiet
from sightql.models.card import ModelCard
from sightql.models.text_embedder import import_offline, pickle_only_folders
from sightql.models.zero_shot.encoder import DualEncoder


def _features(out: Any) -> Any:
    """transformers 4 returns the projected features; 5 returns an output whose pooler_output they are."""
    return out if hasattr(out, "detach") else out.pooler_output


class HfClipEncoder(DualEncoder):
    """A loaded transformers ``CLIPModel`` and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, card: ModelCard, device: str = "cpu"):
        super().__init__(card, float(model.logit_scale.exp().item()), device)
        self._model = model
        self._tokenizer = tokenizer
        self._context = int(getattr(model.config.text_config, "max_position_embeddings", 77))
        self._run_lock = threading.Lock()

    def _image_features(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with self._run_lock, torch.inference_mode():
            pixels = torch.from_numpy(batch).to(self.device)
            return _features(self._model.get_image_features(pixel_values=pixels)).float().cpu().numpy()

    def _text_features(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = self._tokenizer(texts, padding=True, truncation=True, max_length=self._context, return_tensors="pt")
        with self._run_lock, torch.inference_mode():
            tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
            return _features(self._model.get_text_features(**tokens)).float().cpu().numpy()


def check_hf_folder(folder: Path, trust: bool) -> None:
    if trust:
        return
    if pickle_only_folders(folder):
        raise UnsafeModelError(
            f"{folder.name} has pickle weights (*.bin/*.pt) without *.safetensors, which run arbitrary Python code when "
            "loaded; save it with save_pretrained(safe_serialization=True) or pass trust=True only if you trust its author"
        )


def load_hf_clip(folder: Path, card: ModelCard, device: str = "cpu", *, trust: bool = False) -> HfClipEncoder:
    """The CLIP model and tokenizer of ``folder``, from disk only."""
    check_hf_folder(folder, trust)
    transformers = import_offline("transformers", "transformers", "zeroshot")
    try:
        with quiet.transformers_progress_bars():
            model = transformers.CLIPModel.from_pretrained(
                str(folder), local_files_only=True, use_safetensors=None if trust else True, trust_remote_code=False,
            )
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"transformers could not load the CLIP folder {folder.name} ({first_line}); it needs config.json, "
            "*.safetensors weights and the tokenizer files (save_pretrained of the model and its processor)"
        ) from exc
    model.eval().to(device)
    return HfClipEncoder(model, tokenizer, card, device)


__all__ = ["HfClipEncoder", "load_hf_clip"]
