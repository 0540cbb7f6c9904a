"""The model card: everything needed to feed a model and read its answer.

Preprocessing travels with the model. Inference and training derive their
transforms from :class:`InputSpec` and never hard-code sizes or statistics.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from sightql.errors import ConfigError

Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos"]
Task = Literal["classification", "embedding"]
Modality = Literal["image", "text"]


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the model's input tensor.

    ``resize='shorter'`` scales the shorter side to ``size / crop_pct`` then centre-crops
    to ``size``; ``resize='squash'`` scales straight to ``size`` (aspect not kept).
    Pixels are multiplied by ``scale`` (1/255 by default), then ``(x - mean) / std``.
    """

    height: int = 224
    width: int = 224
    channels: int = 3
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    scale: float = 1.0 / 255.0
    interpolation: Interpolation = "bilinear"
    resize: Literal["shorter", "squash"] = "shorter"
    crop_pct: float = 0.875
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ConfigError(f"input channels must be 1 or 3, not {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ConfigError(
                f"mean and std need {self.channels} value(s) each, one per channel; got {self.mean} and {self.std}"
            )
        if any(s == 0 for s in self.std):
            raise ConfigError("std may not contain 0")
        if not 0 < self.crop_pct <= 1:
            raise ConfigError(f"crop_pct must be in (0, 1], not {self.crop_pct}")
        if self.height <= 0 or self.width <= 0:
            raise ConfigError(f"input size must be positive, not {self.height}x{self.width}")

    def shape(self, batch: int) -> tuple[int, ...]:
        if self.layout == "NCHW":
            return (batch, self.channels, self.height, self.width)
        return (batch, self.height, self.width, self.channels)


@dataclass(frozen=True)
class ModelCard:
    name: str
    task: Task = "classification"
    framework: str = "onnx"
    labels: tuple[str, ...] = ()
    input: InputSpec = field(default_factory=InputSpec)
    output: Literal["probabilities", "logits", "embedding"] = "probabilities"
    description: str = ""
    # What the model reads: images (preprocessed by ``input``) or text (its own tokenizer).
    modality: Modality = "image"

    def with_name(self, name: str) -> "ModelCard":
        return replace(self, name=name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ModelCard":
        spec = dict(raw.get("input", {}))
        for key in ("mean", "std"):
            if key in spec:
                spec[key] = tuple(spec[key])
        return cls(
            name=raw["name"],
            task=raw.get("task", "classification"),
            framework=raw.get("framework", "onnx"),
            labels=tuple(raw.get("labels", ())),
            input=InputSpec(**spec),
            output=raw.get("output", "probabilities"),
            description=raw.get("description", ""),
            modality=raw.get("modality", "image"),
        )

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        return cls.from_dict(json.loads(text))
