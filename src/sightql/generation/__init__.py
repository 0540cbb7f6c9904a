"""Images from a text prompt: an OpenAI-compatible image provider.

``provider_from_env()`` reads the provider settings (None when none is configured; ``SETUP_HELP``
says how) and ``generate_image(prompt, provider)`` returns the image bytes;
``sightql.ingest.generated.store_generated(warehouse, image)`` keeps them in ``generated_images``.
The ``openai`` client is imported only when an image is requested (``pip install 'sightql[app]'``).

The vision-language provider of ``ai_classify`` / ``ai_complete`` (an OpenAI-compatible chat API) is
``chat_provider.py`` (settings), ``chat.py`` (one request, retried) and ``vision_language.py``
(the image sent, the prompt, reading the answer); the SQL functions are in ``sightql.functions``.
"""

from sightql.generation.provider import SETUP_HELP, GeneratedImage, ImageProvider, generate_image, provider_from_env

__all__ = ["SETUP_HELP", "GeneratedImage", "ImageProvider", "generate_image", "provider_from_env"]
