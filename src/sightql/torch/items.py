"""One row's bytes -> the tensor a dataset yields: the model card's transforms, or the user's own.

With the card (the default), the bytes go through :func:`sightql.images.preprocess.create_transform`,
the one factory the engine uses for ``classify`` and the trainer for ``session.train``: decoded at the
draft scale the resize needs (a 12-megapixel JPEG decodes at 1/8 for a 224 px model), upright by its
EXIF orientation, in the card's colour mode, resized, cropped and normalised as the card says. The
evaluation transform gives exactly the array ``classify`` feeds the model; ``train=True`` adds the
trainer's augmentation (``augment='light'``: a mirror; ``'standard'``: mirror, crop, rotation, colour),
drawn from ``(seed, epoch, row)`` so a run is reproducible and each epoch differs.

With ``transform=`` the bytes are decoded by the same decoder (EXIF, HEIC, DICOM, 16-bit, the image
limits) at full size into a PIL image, RGB (``'L'`` for a one-channel card), and the item is whatever
``transform(image)`` returns (a torchvision ``transforms.Compose`` ending in ``ToTensor()``, say).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from sightql.images.decode import ImageLimits, decode_image
from sightql.images.preprocess import Transform, create_transform
from sightql.images.spec import InputSpec


class Items:
    """``make(bytes, position, epoch)`` -> the row's tensor (or what ``transform`` returns)."""

    def __init__(self, spec: InputSpec, limits: ImageLimits, *, train: bool = False, augment: str = "light",
                 transform: Callable[[Any], Any] | None = None, seed: int = 0):
        self.spec = spec
        self.limits = limits
        self.train = train
        self.augment = augment
        self.transform = transform
        self.seed = seed
        self.card_transform: Transform = create_transform(spec, limits, is_training=train, augment=augment)

    def for_evaluation(self) -> "Items":
        """The same items without augmentation (a split's validation side)."""
        return Items(self.spec, self.limits, train=False, augment=self.augment, transform=self.transform,
                     seed=self.seed)

    def make(self, data: bytes | None, position: int, epoch: int) -> Any:
        """Raises :class:`sightql.errors.ImageError` when the bytes are not a usable image."""
        if self.transform is not None:
            return self.transform(decode_image(data, self.limits, channels=self.spec.channels))
        card = self.card_transform
        rng = np.random.default_rng([self.seed, epoch, position]) if card.augment != "none" else None
        return torch.from_numpy(card.finish(card.decode(data), rng))
