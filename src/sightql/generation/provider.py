"""An image provider speaking the OpenAI Images API: OpenAI itself, or any compatible endpoint.

The keys are secrets, read from the environment only and never stored; the other settings come from
the config file or their ``SIGHTQL_*`` variable (sightql.config: image_api_base, image_model,
image_size, image_timeout):

| variable               | meaning                                                         | default          |
|------------------------|-----------------------------------------------------------------|------------------|
| OPENAI_API_KEY         | key for the OpenAI Images API (also sent to a compatible endpoint when SIGHTQL_IMAGE_API_KEY is unset) | none |
| SIGHTQL_IMAGE_API_BASE | base URL of an OpenAI-compatible endpoint, e.g. http://localhost:8080/v1 | OpenAI's |
| SIGHTQL_IMAGE_API_KEY  | key for that endpoint, if it needs one                          | OPENAI_API_KEY   |
| SIGHTQL_IMAGE_MODEL    | image model to ask for                                          | dall-e-3         |
| SIGHTQL_IMAGE_SIZE     | image size to ask for                                           | 1024x1024        |
| SIGHTQL_IMAGE_TIMEOUT  | seconds to wait for one image                                   | 120              |
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sightql.config import Settings
from sightql.errors import ConfigError, GenerationError, MissingDependencyError
from sightql.generation.endpoints import OPENAI_BASE, RemoteEndpoint

DEFAULT_MODEL = Settings.image_model
DEFAULT_SIZE = Settings.image_size
DEFAULT_TIMEOUT = Settings.image_timeout
SETUP_HELP = (
    "No image provider is configured. To use the OpenAI Images API, set OPENAI_API_KEY "
    "(and optionally SIGHTQL_IMAGE_MODEL, default dall-e-3, e.g. gpt-image-1) before starting the app:\n\n"
    "    export OPENAI_API_KEY=sk-...\n"
    "    sightql app\n\n"
    "To use any OpenAI-compatible endpoint instead, set SIGHTQL_IMAGE_API_BASE to its base URL "
    "(and SIGHTQL_IMAGE_API_KEY if it needs a key):\n\n"
    "    export SIGHTQL_IMAGE_API_BASE=http://localhost:8080/v1\n"
    "    export SIGHTQL_IMAGE_MODEL=my-image-model\n"
    "    sightql app"
)


@dataclass(frozen=True)
class ImageProvider(RemoteEndpoint):
    """Where images come from; ``api_key`` is read from the environment and never shown or stored."""

    api_key: str | None
    model: str = DEFAULT_MODEL
    size: str = DEFAULT_SIZE
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:
        return f"ImageProvider({self.name!r}, endpoint={self.endpoint!r}, model={self.model!r})"


@dataclass(frozen=True)
class GeneratedImage:
    prompt: str
    data: bytes
    provider: str
    endpoint: str
    model: str
    revised_prompt: str | None = None


def provider_from_env() -> ImageProvider | None:
    """The configured provider, or None when neither SIGHTQL_IMAGE_API_BASE nor OPENAI_API_KEY is set."""
    env, settings = os.environ, Settings.from_env()
    base = settings.image_api_base
    openai_key = env.get("OPENAI_API_KEY", "").strip() or None
    if not base and not openai_key:
        return None
    key = (env.get("SIGHTQL_IMAGE_API_KEY", "").strip() or openai_key) if base else openai_key
    return ImageProvider(
        api_base=base or OPENAI_BASE,
        api_key=key,
        model=settings.image_model or DEFAULT_MODEL,
        size=settings.image_size or DEFAULT_SIZE,
        timeout=settings.image_timeout or DEFAULT_TIMEOUT,
    )


def generate_image(prompt: str, provider: ImageProvider, *, max_bytes: int) -> GeneratedImage:
    """One image for ``prompt``; every provider failure becomes a GenerationError of one sentence."""
    prompt = prompt.strip()
    if not prompt:
        raise ConfigError("the prompt is empty; describe the image you want, e.g. 'a tabby cat on a sofa'")
    try:
        import openai
    except ImportError:
        raise MissingDependencyError("openai", "app") from None
    # The client insists on a key; for an endpoint without one, none is sent (the header is omitted).
    client = openai.OpenAI(
        api_key=provider.api_key or "no-key", base_url=provider.api_base, timeout=provider.timeout, max_retries=1
    )
    request: dict[str, Any] = {"model": provider.model, "prompt": prompt, "n": 1, "size": provider.size}
    if not provider.api_key:
        request["extra_headers"] = {"Authorization": openai.Omit()}
    if not provider.model.startswith("gpt-image"):  # gpt-image models always answer base64 and refuse the field
        request["response_format"] = "b64_json"
    try:
        response = client.images.generate(**request)
    except openai.APIError as exc:
        raise GenerationError(_sentence(exc, provider)) from None
    finally:
        client.close()
    item = response.data[0] if getattr(response, "data", None) else None
    if item is None or not (item.b64_json or item.url):
        raise GenerationError(f"the image provider at {provider.endpoint} answered without an image; try again")
    data = _decode_b64(item.b64_json, provider) if item.b64_json else _fetch(item.url, provider, max_bytes)
    return GeneratedImage(
        prompt=prompt, data=data, provider=provider.name, endpoint=provider.endpoint, model=provider.model,
        revised_prompt=getattr(item, "revised_prompt", None),
    )


def _decode_b64(text: str, provider: ImageProvider) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise GenerationError(f"the image provider at {provider.endpoint} sent image data that is not base64") from None


def _fetch(url: str, provider: ImageProvider, max_bytes: int) -> bytes:
    """The image at the provider's ``url``, refusing anything over ``max_bytes``."""
    import httpx

    if urlsplit(url).scheme not in ("http", "https"):
        raise GenerationError(f"the image provider sent an image URL that is not http(s): {url[:80]!r}")
    chunks: list[bytes] = []
    received = 0
    try:
        with httpx.stream("GET", url, timeout=provider.timeout, follow_redirects=True) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received > max_bytes:
                    raise GenerationError(
                        f"the generated image is over the {max_bytes:,}-byte limit (raise SIGHTQL_MAX_IMAGE_BYTES to accept it)"
                    )
                chunks.append(chunk)
    except httpx.HTTPStatusError as exc:
        raise GenerationError(f"downloading the generated image failed with HTTP {exc.response.status_code}") from None
    except httpx.TimeoutException:
        raise GenerationError(
            f"downloading the generated image took over {provider.timeout:g} s; try again or raise SIGHTQL_IMAGE_TIMEOUT"
        ) from None
    except httpx.HTTPError as exc:
        raise GenerationError(f"downloading the generated image failed: {exc}") from None
    return b"".join(chunks)


def _provider_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or getattr(exc, "message", "") or exc).strip().rstrip(".")


def _sentence(exc: Any, provider: ImageProvider) -> str:
    """One sentence for an ``openai`` client error, naming what to change."""
    import openai

    where = f"the image provider at {provider.endpoint}"
    key_var = "SIGHTQL_IMAGE_API_KEY" if provider.name != "openai" else "OPENAI_API_KEY"
    if isinstance(exc, openai.APITimeoutError):
        return f"{where} did not answer within {provider.timeout:g} s; try again or raise SIGHTQL_IMAGE_TIMEOUT"
    if isinstance(exc, openai.APIConnectionError):
        return f"could not reach {where}; check the address (SIGHTQL_IMAGE_API_BASE) and the network"
    message = _provider_message(exc)
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return f"{where} refused the API key ({message}); set a valid key in {key_var}"
    if getattr(exc, "code", None) == "content_policy_violation" or "content policy" in message.lower() or "safety system" in message.lower():
        return f"{where} refused the prompt under its content policy ({message}); rephrase the prompt"
    if isinstance(exc, openai.NotFoundError):
        return f"{where} does not know model {provider.model!r} ({message}); set SIGHTQL_IMAGE_MODEL to one it serves"
    if isinstance(exc, openai.RateLimitError):
        return f"{where} is rate-limiting this key or its quota is used up ({message}); wait and try again"
    status = getattr(exc, "status_code", None)
    return f"{where} answered HTTP {status}: {message}" if status else f"{where} failed: {message}"
