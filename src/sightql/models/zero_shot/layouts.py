"""Tell a zero-shot dual encoder's folder layout and read what its card records, without loading it.

- ``transformers``: a Hugging Face CLIP folder: ``config.json`` of a CLIPModel, ``*.safetensors``
  weights, tokenizer files and ``preprocessor_config.json`` (size, crop, mean/std, resample).
- ``open_clip``: an open_clip folder (its Hugging Face hub layout): ``open_clip_config.json``
  (``model_cfg``, ``preprocess_cfg``) and ``open_clip_model.safetensors``.
- ``onnx-dual``: a folder with ``zero_shot.json`` naming an image encoder ONNX, a text encoder ONNX
  and a ``tokenizer.json`` (the Hugging Face ``tokenizers`` format), plus the preprocessing and the
  logit scale (docs/registry.md shows one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sightql.errors import ConfigError

HF_CLIP = "transformers"
OPEN_CLIP = "open_clip"
ONNX_DUAL = "onnx-dual"
FRAMEWORKS = (HF_CLIP, OPEN_CLIP, ONNX_DUAL)
MANIFEST = "zero_shot.json"
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_OPEN_CLIP_RESIZE = {"shortest": "shorter", "squash": "squash", "longest": "pad"}
_MANIFEST_KEYS = {"image_encoder", "text_encoder", "tokenizer", "logit_scale", "context_length", "input", "templates"}
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}  # PIL's numbering, as preprocessor_config.json has it


def read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path.name} in {path.parent.name} is not readable JSON ({exc}); restore it from the model's source") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path.name} in {path.parent.name} is not a JSON object; restore it from the model's source")
    return raw


def is_hf_clip(folder: Path) -> bool:
    config = folder / "config.json"
    if not config.is_file() or (folder / "modules.json").is_file():
        return False
    raw = read_json(config)
    return raw.get("model_type") == "clip" or "CLIPModel" in (raw.get("architectures") or [])


def layout_of(folder: Path) -> str | None:
    """``'onnx-dual'``, ``'open_clip'``, ``'transformers'`` or None (not a dual encoder folder)."""
    if not folder.is_dir():
        return None
    if (folder / MANIFEST).is_file():
        return ONNX_DUAL
    if (folder / OPEN_CLIP_CONFIG).is_file():
        return OPEN_CLIP
    return HF_CLIP if is_hf_clip(folder) else None


def hf_input(folder: Path) -> dict[str, Any]:
    """InputSpec fields from ``preprocessor_config.json`` (resize the shorter side, centre-crop, normalise)."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        raise ConfigError(
            f"{folder.name} has no preprocessor_config.json, so its image preprocessing is unknown; save the "
            "CLIPProcessor (or CLIPImageProcessor) into the folder with save_pretrained"
        )
    raw = read_json(path)
    size = raw.get("size") or {}
    crop = raw.get("crop_size") or {}
    shortest = size.get("shortest_edge") if isinstance(size, dict) else size
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    height = int(crop.get("height") or (size.get("height") if isinstance(size, dict) else 0) or shortest or 224)
    width = int(crop.get("width") or (size.get("width") if isinstance(size, dict) else 0) or shortest or 224)
    fields: dict[str, Any] = {"height": height, "width": width, "interpolation": _RESAMPLE.get(raw.get("resample", 3), "bicubic")}
    if raw.get("do_normalize", True):
        fields["mean"] = tuple(float(v) for v in raw.get("image_mean", OPENAI_MEAN))
        fields["std"] = tuple(float(v) for v in raw.get("image_std", OPENAI_STD))
    else:
        fields["mean"], fields["std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    fields["scale"] = float(raw.get("rescale_factor", 1 / 255)) if raw.get("do_rescale", True) else 1.0
    if shortest and raw.get("do_center_crop", True):
        fields["resize"], fields["crop_pct"] = "shorter", min(1.0, max(height, width) / float(shortest))
    else:
        fields["resize"] = "squash"
    return fields


def open_clip_input(folder: Path) -> dict[str, Any]:
    """InputSpec fields from ``open_clip_config.json``: its ``preprocess_cfg`` (open_clip's defaults: OpenAI
    mean/std, bicubic, shorter side resized then centre-cropped) at the vision tower's ``image_size``."""
    raw = read_json(folder / OPEN_CLIP_CONFIG)
    model_cfg = raw.get("model_cfg", raw)
    pre = raw.get("preprocess_cfg") or {}
    size = pre.get("size") or (model_cfg.get("vision_cfg") or {}).get("image_size", 224)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    mode = pre.get("resize_mode", "shortest")
    if mode not in _OPEN_CLIP_RESIZE:
        raise ConfigError(f"{OPEN_CLIP_CONFIG} has resize_mode {mode!r}; SightQL reads {', '.join(_OPEN_CLIP_RESIZE)}")
    return {
        "height": int(height), "width": int(width), "resize": _OPEN_CLIP_RESIZE[mode], "crop_pct": 1.0,
        "mean": tuple(float(v) for v in pre.get("mean", OPENAI_MEAN)),
        "std": tuple(float(v) for v in pre.get("std", OPENAI_STD)),
        "interpolation": pre.get("interpolation", "bicubic"),
    }


def read_manifest(folder: Path) -> dict[str, Any]:
    """``zero_shot.json`` checked: its three files exist inside the folder; unknown keys are refused."""
    raw = read_json(folder / MANIFEST)
    unknown = set(raw) - _MANIFEST_KEYS
    if unknown:
        raise ConfigError(f"{MANIFEST} has unknown keys {sorted(unknown)}; use {', '.join(sorted(_MANIFEST_KEYS))}")
    for key, default in (("image_encoder", None), ("text_encoder", None), ("tokenizer", "tokenizer.json")):
        name = raw.get(key, default)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{MANIFEST} needs {key!r}: the file name of the {key.replace('_', ' ')} in the folder")
        path = (folder / name).resolve()
        if not path.is_relative_to(folder.resolve()) or not path.is_file():
            raise ConfigError(f"{MANIFEST} names {key} {name!r}, which is not a file inside {folder.name}")
        raw[key] = name
    return raw


def manifest_input(manifest: dict[str, Any]) -> dict[str, Any]:
    """InputSpec fields from the manifest's ``input`` (``size`` as a number or [h, w], InputSpec fields)."""
    fields = dict(manifest.get("input") or {})
    if "size" in fields:
        size = fields.pop("size")
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        fields.update(height=int(height), width=int(width))
    for key in ("mean", "std"):
        if key in fields:
            fields[key] = tuple(float(v) for v in fields[key])
    return fields


def layout_input(folder: Path, layout: str) -> dict[str, Any]:
    if layout == HF_CLIP:
        return hf_input(folder)
    if layout == OPEN_CLIP:
        return open_clip_input(folder)
    return manifest_input(read_manifest(folder))


def layout_templates(folder: Path, layout: str) -> tuple[str, ...]:
    """The templates a manifest names (an HF folder names none)."""
    if layout != ONNX_DUAL:
        return ()
    return tuple(read_manifest(folder).get("templates") or ())


__all__ = ["FRAMEWORKS", "HF_CLIP", "MANIFEST", "ONNX_DUAL", "OPEN_CLIP", "OPEN_CLIP_CONFIG", "layout_input", "layout_of", "layout_templates", "read_manifest"]
