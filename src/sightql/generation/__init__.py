"""Images from a text prompt: an OpenAI-compatible image provider, and a table that keeps each image with its prompt.

``provider_from_env()`` reads the provider settings (None when none is configured; ``SETUP_HELP``
says how), ``generate_image(prompt, provider)`` returns the image bytes, and
``store_generated(session, image)`` keeps them in ``generated_images``. The ``openai`` client is
imported only when an image is requested (``pip install 'sightql[app]'``).
"""

from sightql.generation.provider import SETUP_HELP, GeneratedImage, ImageProvider, generate_image, provider_from_env
from sightql.generation.store import GENERATED_TABLE, store_generated

__all__ = [
    "GENERATED_TABLE", "SETUP_HELP", "GeneratedImage", "ImageProvider", "generate_image", "provider_from_env",
    "store_generated",
]
