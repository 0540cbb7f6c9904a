"""How an image becomes a model's input tensor: size, channels, layout, scale and statistics.

It lives with the images because preprocessing reads it; the model card (``sightql.models.card``)
carries one, so preprocessing travels with the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sightql.errors import ConfigError

Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos"]
Resize = Literal["shorter", "squash", "pad"]
RESIZE_MODES: tuple[str, ...] = ("shorter", "squash", "pad")


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the model's input tensor.

    ``resize='shorter'`` scales the shorter side to ``size / crop_pct`` then centre-crops
    to ``size``; ``resize='squash'`` scales straight to ``size`` (aspect not kept);
    ``resize='pad'`` letterboxes: the longer side fits ``size``, the aspect is kept and the
    rest is filled with the mean colour (0 after normalising), so nothing is cut or distorted.
    Pixels are multiplied by ``scale`` (1/255 by default), then ``(x - mean) / std``.
    """

    height: int = 224
    width: int = 224
    channels: int = 3
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    scale: float = 1.0 / 255.0
    interpolation: Interpolation = "bilinear"
    resize: Resize = "shorter"
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
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"resize={self.resize!r} is not known; use one of {', '.join(RESIZE_MODES)}")
        if not 0 < self.crop_pct <= 1:
            raise ConfigError(f"crop_pct must be in (0, 1], not {self.crop_pct}")
        if self.height <= 0 or self.width <= 0:
            raise ConfigError(f"input size must be positive, not {self.height}x{self.width}")

    def shape(self, batch: int) -> tuple[int, ...]:
        if self.layout == "NCHW":
            return (batch, self.channels, self.height, self.width)
        return (batch, self.height, self.width, self.channels)
