"""Decode image bytes and turn them into model input, driven by the model card."""

from sightql.images.decode import ImageLimits, decode_image, probe_image
from sightql.images.preprocess import preprocess

__all__ = ["ImageLimits", "decode_image", "probe_image", "preprocess"]
