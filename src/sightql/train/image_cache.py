"""Decoded training images kept in memory between epochs, within a byte budget.

Epochs 2..N of a small data set would otherwise read every image's bytes again (a warehouse query
or a file read) and decode it again. What is kept is the image *before* anything random: decoded
(at the draft scale the resize needs, see :meth:`sightql.images.preprocess.Transform.decode`),
upright, in the model's colour mode; augmentation, resize and normalisation still run every epoch,
so each epoch's augmentation differs as it did without the cache.

The budget is a ceiling, not a target: images are kept first come, first kept, until the next one
would pass it; later ones are decoded every epoch as before (with shuffled epochs, evicting to make
room would only trade one miss for another). The training and validation sets of a run share one
cache, keyed by the row's key, and so do the passes before the epochs (the probe epoch's feature pass,
which decodes every row once anyway, and the learning-rate range test), so epoch 1 already finds the
images decoded.
"""

from __future__ import annotations

import threading
from typing import Any, Hashable

from PIL import Image


def image_cache(megabytes: int) -> "DecodedImageCache | None":
    """A run's cache of ``megabytes`` (``image_cache_mb``), or None when that is 0."""
    return DecodedImageCache(megabytes * 1024 * 1024) if megabytes else None


def image_bytes(image: Image.Image) -> int:
    """Memory an image's pixels take (8-bit bands)."""
    return image.width * image.height * len(image.getbands())


class DecodedImageCache:
    """Thread-safe ``key -> decoded PIL image``, holding at most ``max_bytes`` of pixels."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._images: dict[Hashable, Image.Image] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._images)

    def get(self, key: Hashable) -> Image.Image | None:
        with self._lock:
            image = self._images.get(key)
            if image is None:
                self.misses += 1
            else:
                self.hits += 1
            return image

    def put(self, key: Hashable, image: Image.Image) -> bool:
        """Keep ``image`` unless it would take the cache past its budget; returns whether it was kept.

        A plain copy is kept: an image straight from a decoder still holds its file object (the bytes)."""
        size = image_bytes(image)
        with self._lock:
            if key in self._images:
                return True
            if self.bytes + size > self.max_bytes:
                return False
            self.bytes += size  # reserved now, so threads putting at once stay within the budget
        kept = image.copy()
        with self._lock:
            self._images[key] = kept
        return True

    def stats(self) -> dict[str, Any]:
        return {"images": len(self._images), "bytes": self.bytes, "hits": self.hits, "misses": self.misses}
