"""Pillow image -> float32 array shaped for the model, from the model card's input spec.

Nothing here is hard-coded: size, resize mode, crop, interpolation, scale,
mean/std, channels and layout all come from :class:`sightql.models.card.InputSpec`.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from sightql.images.decode import ImageLimits, decode_image
from sightql.models.card import InputSpec

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def resize_target(spec: InputSpec) -> int:
    """Length of the shorter side before the centre crop."""
    return int(math.floor(max(spec.height, spec.width) / spec.crop_pct))


def _resize_and_crop(image: Image.Image, spec: InputSpec) -> Image.Image:
    resample = _RESAMPLE[spec.interpolation]
    if spec.resize == "squash":
        return image.resize((spec.width, spec.height), resample)
    target = resize_target(spec)
    width, height = image.size
    scale = target / min(width, height)
    new_w, new_h = max(spec.width, round(width * scale)), max(spec.height, round(height * scale))
    image = image.resize((new_w, new_h), resample)
    left = (new_w - spec.width) // 2
    top = (new_h - spec.height) // 2
    return image.crop((left, top, left + spec.width, top + spec.height))


def to_array(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """Resize, crop and normalise one decoded image; returns CHW or HWC float32."""
    pixels = np.asarray(_resize_and_crop(image, spec), dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    pixels = (pixels * np.float32(spec.scale) - mean) / std
    if spec.layout == "NCHW":
        pixels = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    return pixels


def preprocess(data: bytes | None, spec: InputSpec, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Bytes -> model-ready array. Raises :class:`sightql.errors.ImageError`."""
    min_size = None if spec.resize == "squash" else resize_target(spec)
    image = decode_image(data, limits, channels=spec.channels, min_size=min_size)
    return to_array(image, spec)
