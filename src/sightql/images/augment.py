"""Training-time augmentation of a decoded image (used through :func:`sightql.images.preprocess.create_transform`)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance


def augment_image(image: Image.Image, preset: str, rng: np.random.Generator) -> Image.Image:
    """'light': mirror. 'standard': mirror, scale/shift crop up to 20%, rotate up to 10 degrees, brightness/contrast."""
    if preset == "none":
        return image
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if preset == "light":
        return image
    width, height = image.size
    scale = rng.uniform(0.8, 1.0)
    crop_w, crop_h = max(1, int(width * scale)), max(1, int(height * scale))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    image = image.crop((left, top, left + crop_w, top + crop_h))
    angle = float(rng.uniform(-10, 10))
    fill = 0 if image.mode == "L" else (0, 0, 0)
    image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=fill)
    image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.8, 1.2)))
    return ImageEnhance.Contrast(image).enhance(float(rng.uniform(0.8, 1.2)))
