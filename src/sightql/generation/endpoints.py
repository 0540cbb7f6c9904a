"""The base URL of an OpenAI-compatible provider, as it may be shown and stored."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

OPENAI_BASE = "https://api.openai.com/v1"


def provider_name(api_base: str) -> str:
    """``'openai'`` for OpenAI's own API, else ``'openai-compatible'``."""
    return "openai" if api_base == OPENAI_BASE else "openai-compatible"


def public_endpoint(api_base: str) -> str:
    """``api_base`` without user:password, query or fragment: safe to show, log and store."""
    parts = urlsplit(api_base)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class RemoteEndpoint:
    """An OpenAI-compatible provider's base URL (the image and the chat providers build on it)."""

    api_base: str

    @property
    def name(self) -> str:
        return provider_name(self.api_base)

    @property
    def endpoint(self) -> str:
        """The base URL without user:password, query or fragment: safe to show and store."""
        return public_endpoint(self.api_base)
