"""Pillow image -> float32 array shaped for the model, from the model card's input spec.

Nothing here is hard-coded: size, resize mode, crop, interpolation, scale,
mean/std, channels and layout all come from :class:`sightql.images.spec.InputSpec`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from sightql.images.augment import augment_image
from sightql.images.decode import ImageLimits, decode_image
from sightql.images.spec import InputSpec

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def resize_target(spec: InputSpec) -> int:
    """Length of the shorter side before the centre crop."""
    return int(math.floor(max(spec.height, spec.width) / spec.crop_pct))


def _letterbox_size(width: int, height: int, spec: InputSpec) -> tuple[int, int]:
    """The size that fits the longer side into the spec's box, keeping the aspect ratio (at least 1 px)."""
    scale = min(spec.width / width, spec.height / height)
    return max(1, min(spec.width, round(width * scale))), max(1, min(spec.height, round(height * scale)))


def _resize_and_crop(image: Image.Image, spec: InputSpec) -> Image.Image:
    resample = _RESAMPLE[spec.interpolation]
    if spec.resize == "squash":
        return image.resize((spec.width, spec.height), resample)
    if spec.resize == "pad":  # the whole image, aspect kept; to_array puts it in the middle of the box
        return image.resize(_letterbox_size(*image.size, spec), resample)
    target = resize_target(spec)
    width, height = image.size
    scale = target / min(width, height)
    new_w, new_h = max(spec.width, round(width * scale)), max(spec.height, round(height * scale))
    left = (new_w - spec.width) // 2
    top = (new_h - spec.height) // 2
    # Resample only the centre crop: the source region that the crop of the resized image covers
    # (the same filter and scale; pixels may differ by 1 in 255 from resizing all, then cropping).
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + spec.width) * sx, (top + spec.height) * sy)
    return image.resize((spec.width, spec.height), resample, box=box)


def to_array(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """Resize, crop and normalise one decoded image; returns CHW or HWC float32.

    ``(pixel * scale - mean) / std`` is computed as ``pixel * (scale / std) - mean / std`` per
    channel, laid out first on the 8-bit pixels, so the float work is one pass over contiguous planes.
    ``resize='pad'`` normalises the fitted image and centres it in a box of zeros: the mean colour,
    exactly, whatever the statistics.
    """
    out = _normalised(np.asarray(_resize_and_crop(image, spec)), spec)
    if spec.resize != "pad":
        return out
    nchw = spec.layout == "NCHW"
    height, width = out.shape[1:3] if nchw else out.shape[0:2]
    top, left = (spec.height - height) // 2, (spec.width - width) // 2
    box = np.zeros(spec.shape(1)[1:], dtype=np.float32)
    if nchw:
        box[:, top : top + height, left : left + width] = out
    else:
        box[top : top + height, left : left + width, :] = out
    return box


def _normalised(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """8-bit pixels (HW or HWC) -> float32 in the spec's layout, scaled and normalised."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    std = np.asarray(spec.std, dtype=np.float32)
    gain = np.float32(spec.scale) / std
    offset = np.asarray(spec.mean, dtype=np.float32) / std
    if gain.shape[0] != pixels.shape[2]:  # one mean/std for every channel, or a card that broadcasts
        gain, offset = np.broadcast_to(gain, pixels.shape[2:]), np.broadcast_to(offset, pixels.shape[2:])
    if spec.layout == "NCHW":
        planes = pixels.transpose(2, 0, 1)
        out = np.empty(planes.shape, dtype=np.float32)
        np.multiply(planes, gain[:, None, None], out=out)
        out -= offset[:, None, None]
        return out
    out = np.empty(pixels.shape, dtype=np.float32)
    np.multiply(pixels, gain, out=out)
    out -= offset
    return out


@dataclass(frozen=True)
class Transform:
    """Bytes -> model-ready array: decode, (for training) augment, resize/crop, normalise."""

    spec: InputSpec
    limits: ImageLimits = ImageLimits()
    augment: str = "none"  # an augmentation preset, applied only when made with is_training=True

    def __call__(self, data: bytes | None, rng: np.random.Generator | None = None) -> np.ndarray:
        """Raises :class:`sightql.errors.ImageError`; ``rng`` draws the augmentation (required with one)."""
        return self.finish(self.decode(data), rng)

    def decode(self, data: bytes | None) -> Image.Image:
        """The decoded image, no larger than the resize needs: a JPEG decodes at the smallest scale
        (1/2, 1/4, 1/8) that keeps both sides at least the resize target (``Image.draft``): the
        shorter side's target before a centre crop, the larger of width and height for ``squash``.
        The same image for every epoch, so training may keep it (:mod:`sightql.train.image_cache`)."""
        if self.spec.resize in ("squash", "pad"):  # pad: the longer side fits
            min_size = max(self.spec.width, self.spec.height)
        else:
            min_size = resize_target(self.spec)
        return decode_image(data, self.limits, channels=self.spec.channels, min_size=min_size)

    def finish(self, image: Image.Image, rng: np.random.Generator | None = None) -> np.ndarray:
        """The random parts (augmentation, drawn from ``rng``) and the resize/crop/normalise of a decoded image."""
        if self.augment != "none":
            image = augment_image(image, self.augment, rng if rng is not None else np.random.default_rng())
        return to_array(image, self.spec)


def create_transform(
    spec: InputSpec, limits: ImageLimits = ImageLimits(), *, is_training: bool = False, augment: str = "none"
) -> Transform:
    """The one factory for inference and training transforms (as timm's ``create_transform``).

    Evaluation ignores ``augment``; training adds it on the decoded image before the shared
    resize/crop/normalise, so both see the same preprocessing from the model card.
    """
    return Transform(spec, limits, augment if is_training else "none")


def preprocess(data: bytes | None, spec: InputSpec, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Bytes -> model-ready array (the evaluation transform). Raises :class:`sightql.errors.ImageError`."""
    return create_transform(spec, limits)(data)
