"""Images from a text prompt: an OpenAI-compatible image provider.

``provider_from_env()`` reads the provider settings (None when none is configured; ``SETUP_HELP``
says how) and ``generate_image(prompt, provider)`` returns the image bytes;
``sightql.ingest.generated.store_generated(warehouse, image)`` keeps them in ``generated_images``.
The ``openai`` client is imported only when an image is requested (``pip install 'sightql[app]'``).
"""

from sightql.generation.provider import SETUP_HELP, GeneratedImage, ImageProvider, generate_image, provider_from_env

__all__ = ["SETUP_HELP", "GeneratedImage", "ImageProvider", "generate_image", "provider_from_env"]
