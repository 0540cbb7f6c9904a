"""An image encoder and a text encoder as ONNX, with their ``tokenizer.json``, named by ``zero_shot.json``.

The image encoder takes the preprocessed images (its one input, float32 in the card's layout) and
gives one vector per image. The text encoder takes ``input_ids`` (int64 ``[N, L]``) and, when it has
that input, ``attention_mask``; its first output is one vector per text. Texts are tokenized with the
``tokenizers`` library from ``tokenizer.json`` (its post-processor adds the start and end tokens),
truncated to ``context_length`` (default 77) and padded to the longest text of the batch.
Both run on the CPU with ONNX Runtime; nothing in the folder is unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sightql.config import onnx_threads
from sightql.errors import ConfigError, MissingDependencyError
from sightql.models.card import ModelCard
from sightql.models.zero_shot.encoder import DualEncoder
from sightql.models.zero_shot.layouts import read_manifest

DEFAULT_CONTEXT = 77


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = onnx_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own classes for a file it cannot read
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"ONNX Runtime cannot read {path.name} ({first_line[:200]}); export the encoder again") from exc


def _tokenizer(path: Path, context: int) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise MissingDependencyError("tokenizers", "zeroshot") from exc
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a plain Exception for a malformed file
        raise ConfigError(f"{path.name} is not a tokenizers tokenizer.json ({exc}); save one with tokenizer.save(path)") from exc
    pad_id = tokenizer.token_to_id("<|endoftext|>")
    padding = tokenizer.padding or {}
    tokenizer.enable_padding(pad_id=int(padding.get("pad_id", pad_id if pad_id is not None else 0)))
    tokenizer.enable_truncation(max_length=context)
    return tokenizer


class OnnxDualEncoder(DualEncoder):
    """Two ONNX Runtime sessions and a tokenizer."""

    def __init__(self, folder: Path, card: ModelCard):
        manifest = read_manifest(folder)
        scale = manifest.get("logit_scale", 100.0)
        if not isinstance(scale, (int, float)) or scale <= 0:
            raise ConfigError(f"zero_shot.json's logit_scale must be a positive number (CLIP's is 100), not {scale!r}")
        super().__init__(card, float(scale))
        self._image = _session(folder / manifest["image_encoder"])
        self._text = _session(folder / manifest["text_encoder"])
        self._image_input = self._image.get_inputs()[0].name
        names = [i.name for i in self._text.get_inputs()]
        if "input_ids" not in names:
            raise ConfigError(
                f"the text encoder {manifest['text_encoder']} takes {', '.join(names)}, not input_ids; "
                "export it with inputs named input_ids (and attention_mask)"
            )
        self._with_mask = "attention_mask" in names
        self._tokens = _tokenizer(folder / manifest["tokenizer"], int(manifest.get("context_length", DEFAULT_CONTEXT)))

    def _image_features(self, batch: np.ndarray) -> np.ndarray:
        return self._image.run(None, {self._image_input: batch})[0]

    def _text_features(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokens.encode_batch(texts)
        feed = {"input_ids": np.asarray([e.ids for e in encoded], dtype=np.int64)}
        if self._with_mask:
            feed["attention_mask"] = np.asarray([e.attention_mask for e in encoded], dtype=np.int64)
        return self._text.run(None, feed)[0]


def load_onnx_dual(folder: Path, card: ModelCard) -> OnnxDualEncoder:
    return OnnxDualEncoder(folder, card)


__all__ = ["OnnxDualEncoder", "load_onnx_dual"]
