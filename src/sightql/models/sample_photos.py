"""A seeded sample of real photos for calibrating and gating the built-in model's int8 variant.

The photos are the ones the demo uses (scikit-image's astronaut, cat, coffee and rocket, and
scikit-learn's china and flower; the ``demo`` extra installs both), cut into generated crops: a
random part of a photo (60-100% of each side), resized to 500x375, with a little noise, saved as
JPEG. Different seeds give different samples, so the gate never sees a calibration image.
"""

from __future__ import annotations

import io

import numpy as np

from sightql.errors import MissingDependencyError

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")  # chelsea: the cat
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")


def photos() -> list[np.ndarray]:
    """The bundled photos as RGB arrays."""
    try:
        import skimage.data
        from sklearn.datasets import load_sample_image
    except ImportError:
        raise MissingDependencyError(
            "the built-in int8 variant is calibrated on the demo photos; install them with pip install 'sightql[demo]'"
        ) from None
    return [getattr(skimage.data, n)() for n in SKIMAGE_PHOTOS] + [load_sample_image(n) for n in SKLEARN_PHOTOS]


def generated_crops(n: int, seed: int, size: tuple[int, int] = (500, 375)) -> list[bytes]:
    """``n`` distinct JPEGs: seeded random crops of the photos (60-100% of each side), resized to ``size``, with a
    little noise, quality 90. The benchmarks' generated photos are these (benchmarks/_common.py)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pool = [Image.fromarray(p).convert("RGB") for p in photos()]
    out: list[bytes] = []
    for i in range(n):
        base = pool[i % len(pool)]
        w, h = base.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = np.asarray(base.crop((x, y, x + cw, y + ch)).resize(size), dtype=np.int16)
        noisy = np.clip(crop + rng.integers(-6, 7, crop.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out
