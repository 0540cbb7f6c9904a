"""int8 versions of registered models, calibrated on the user's own images and gated (``registry.quantize``)."""

from sightql.quantize.version import quantize_model, quantize_with_stages

__all__ = ["quantize_model", "quantize_with_stages"]
