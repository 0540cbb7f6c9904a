"""A vision-language provider speaking the OpenAI chat-completions API: OpenAI, or a local vLLM or
Ollama server (any endpoint answering ``POST {base}/chat/completions``).

The key is a secret, read from the environment only and never stored, logged or shown; the other
settings come from the session's :class:`~sightql.config.Settings` (config file < ``SIGHTQL_*``):

| variable                  | meaning                                                       | default        |
|---------------------------|---------------------------------------------------------------|----------------|
| OPENAI_API_KEY            | key for OpenAI (also sent to a compatible endpoint when SIGHTQL_CHAT_API_KEY is unset) | none |
| SIGHTQL_CHAT_API_BASE     | base URL of an OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 | OpenAI's |
| SIGHTQL_CHAT_API_KEY      | key for that endpoint, if it needs one                        | OPENAI_API_KEY |
| SIGHTQL_CHAT_MODEL        | model asked when a query names none                           | gpt-4o-mini    |
| SIGHTQL_CHAT_TIMEOUT      | seconds to wait for one answer                                | 60             |
| SIGHTQL_CHAT_CONCURRENCY  | requests in flight at once, per session                       | 4              |
| SIGHTQL_CHAT_MAX_ATTEMPTS | tries per image (429, 5xx, timeouts and lost connections are retried) | 4      |
| SIGHTQL_CHAT_MAX_IMAGES   | images sent per query; a query that would send more is refused | 1000          |
| SIGHTQL_CHAT_IMAGE_SIDE   | longest side in pixels of the JPEG sent                       | 768            |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sightql.config import Settings
from sightql.errors import GenerationError
from sightql.generation.endpoints import OPENAI_BASE, RemoteEndpoint

KEY_VARIABLE = "SIGHTQL_CHAT_API_KEY"
CHAT_SETUP_HELP = (
    "no vision-language provider is configured; set OPENAI_API_KEY to use OpenAI, or SIGHTQL_CHAT_API_BASE "
    "to an OpenAI-compatible endpoint such as http://localhost:11434/v1 (Ollama) or http://localhost:8000/v1 "
    "(vLLM), with SIGHTQL_CHAT_API_KEY if it needs a key and SIGHTQL_CHAT_MODEL for its model"
)


@dataclass(frozen=True)
class ChatProvider(RemoteEndpoint):
    """Where ai_classify / ai_complete send images; ``api_key`` is never shown, stored or logged."""

    api_key: str | None = field(default=None, repr=False)
    model: str = Settings.chat_model
    timeout: float = Settings.chat_timeout
    concurrency: int = Settings.chat_concurrency
    max_attempts: int = Settings.chat_max_attempts
    max_images: int = Settings.chat_max_images
    image_side: int = Settings.chat_image_side

    @property
    def url(self) -> str:
        """Where a request goes (the configured base, credentials in it included)."""
        return self.api_base.rstrip("/") + "/chat/completions"

    @property
    def key_variable(self) -> str:
        return "OPENAI_API_KEY" if self.name == "openai" else KEY_VARIABLE

    def redact(self, text: str) -> str:
        """``text`` with the key (and any password in the base URL) replaced by ``***``."""
        for secret in (self.api_key, urlsplit(self.api_base).password):
            if secret:
                text = text.replace(secret, "***")
        return text

    def __repr__(self) -> str:
        return f"ChatProvider({self.name!r}, endpoint={self.endpoint!r}, model={self.model!r})"


def chat_provider(settings: Settings, environ: Mapping[str, str]) -> ChatProvider | None:
    """The configured provider, or None when neither SIGHTQL_CHAT_API_BASE nor OPENAI_API_KEY is set."""
    base = settings.chat_api_base
    openai_key = environ.get("OPENAI_API_KEY", "").strip() or None
    if not base and not openai_key:
        return None
    key = (environ.get(KEY_VARIABLE, "").strip() or openai_key) if base else openai_key
    return ChatProvider(
        api_base=base or OPENAI_BASE,
        api_key=key,
        model=settings.chat_model or Settings.chat_model,
        timeout=settings.chat_timeout or Settings.chat_timeout,
        concurrency=settings.chat_concurrency,
        max_attempts=settings.chat_max_attempts,
        max_images=settings.chat_max_images,
        image_side=settings.chat_image_side,
    )


def require_chat_provider(settings: Settings, environ: Mapping[str, str]) -> ChatProvider:
    """:func:`chat_provider`, or a GenerationError of one sentence naming the settings to set."""
    provider = chat_provider(settings, environ)
    if provider is None:
        raise GenerationError(CHAT_SETUP_HELP)
    return provider
