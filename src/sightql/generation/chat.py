"""One chat-completions request carrying an image, retried with backoff where retrying can help.

``ask(client, provider, model, text, image_url)`` sends ``POST {base}/chat/completions`` (OpenAI's
protocol, temperature 0) with the text and the image as a ``data:`` URL in an ``image_url`` part, and
returns the answer's text. An HTTP 429, a 5xx, a timeout or a lost connection is tried again, up to
``provider.max_attempts`` tries in all, waiting the server's ``Retry-After`` (seconds or an HTTP date,
at most :data:`MAX_RETRY_AFTER`) or else 0.5 s, 1 s, 2 s, ... (at most 20 s) plus a little jitter.
Every failure is a GenerationError of one sentence naming the status and the fix; the key never
appears in one (the provider's own message is redacted too). httpx and tenacity are imported when a
request is made (``pip install 'sightql[app]'``).
"""

from __future__ import annotations

import email.utils
import random
import time
from typing import Any

from sightql.errors import GenerationError, MissingDependencyError
from sightql.generation.chat_provider import ChatProvider

MAX_RETRY_AFTER = 60.0  # a server asking for a longer wait fails that image now, saying so
BACKOFF_FIRST, BACKOFF_MAX, JITTER = 0.5, 20.0, 0.25


class TransientError(Exception):
    """A failure worth another try; ``retry_after`` is the server's requested wait, if it gave one."""

    def __init__(self, what: str, hint: str, retry_after: float | None = None):
        super().__init__(what)
        self.what, self.hint, self.retry_after = what, hint, retry_after


def open_client(provider: ChatProvider) -> Any:
    """An ``httpx.Client`` for ``provider`` (the bearer token set when there is a key); close it after."""
    try:
        import httpx
    except ImportError:
        raise MissingDependencyError("httpx", "app") from None
    headers = {"Authorization": f"Bearer {provider.api_key}"} if provider.api_key else {}
    limits = httpx.Limits(max_connections=provider.concurrency, max_keepalive_connections=provider.concurrency)
    return httpx.Client(timeout=provider.timeout, headers=headers, limits=limits, follow_redirects=False)


def chat_body(model: str, text: str, image_url: str) -> dict[str, Any]:
    """The request: one user message of the text then the image; temperature 0 for a repeatable answer."""
    content = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": image_url}}]
    return {"model": model, "temperature": 0, "messages": [{"role": "user", "content": content}]}


def ask(client: Any, provider: ChatProvider, model: str, text: str, image_url: str) -> str:
    """The model's answer to ``text`` about the image at ``image_url``, or a GenerationError sentence."""
    try:
        import tenacity
    except ImportError:  # a core dependency; said plainly all the same
        raise MissingDependencyError("tenacity", "app") from None
    body = chat_body(model, text, image_url)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(provider.max_attempts),
        wait=_wait,
        retry=tenacity.retry_if_exception_type(TransientError),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                return _send(client, provider, model, body)
    except TransientError as exc:
        tries = "1 attempt" if provider.max_attempts == 1 else f"{provider.max_attempts} attempts"
        raise GenerationError(f"{_where(provider)} {exc.what} after {tries}; {exc.hint}") from None
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


def _wait(state: Any) -> float:
    """The server's Retry-After when it sent one, else exponential backoff with jitter."""
    exc = state.outcome.exception() if state.outcome is not None else None
    if isinstance(exc, TransientError) and exc.retry_after is not None:
        return exc.retry_after
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (state.attempt_number - 1)) + random.uniform(0, JITTER)


def _send(client: Any, provider: ChatProvider, model: str, body: dict[str, Any]) -> str:
    import httpx

    try:
        response = client.post(provider.url, json=body)
    except httpx.TimeoutException:
        raise TransientError(f"did not answer within {provider.timeout:g} s",
                             "try again or raise SIGHTQL_CHAT_TIMEOUT") from None
    except httpx.TransportError:
        raise TransientError("could not be reached", "check SIGHTQL_CHAT_API_BASE and the network") from None
    status = response.status_code
    if status == 429 or status >= 500:
        wait = retry_after(response.headers.get("retry-after"))
        if wait is not None and wait > MAX_RETRY_AFTER:
            raise GenerationError(f"{_where(provider)} answered HTTP {status} and asked to wait {wait:g} s; "
                                  "try again later")
        hint = "try again later or lower SIGHTQL_CHAT_CONCURRENCY" if status == 429 else "try again later"
        raise TransientError(f"answered HTTP {status} ({_message(response, provider)})", hint, wait)
    if status >= 400:
        raise GenerationError(_refusal(response, provider, model))
    return _answer_text(response, provider)


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (a number of seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _where(provider: ChatProvider) -> str:
    return f"the chat provider at {provider.endpoint}"


def _message(response: Any, provider: ChatProvider) -> str:
    """The provider's own reason, short, with any secret redacted."""
    try:
        data = response.json()
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
    text = str(message or response.text or response.reason_phrase or "no reason given")
    text = " ".join(provider.redact(text).split()).rstrip(".")
    return text if len(text) <= 200 else text[:197] + "..."


def _refusal(response: Any, provider: ChatProvider, model: str) -> str:
    """One sentence for a 4xx other than 429 (not retried: the same request would fail the same way)."""
    status, message = response.status_code, _message(response, provider)
    if status in (401, 403):
        return f"{_where(provider)} refused the API key (HTTP {status}: {message}); set a valid key in {provider.key_variable}"
    if status == 404:
        return (f"{_where(provider)} answered HTTP 404 for model {model!r} ({message}); name a model it serves "
                "(model := '...' or SIGHTQL_CHAT_MODEL)")
    return f"{_where(provider)} answered HTTP {status}: {message}"


def _answer_text(response: Any, provider: ChatProvider) -> str:
    """``choices[0].message.content`` as text (a string, or a list of text parts)."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise GenerationError(f"{_where(provider)} answered without a chat message (HTTP {response.status_code}); "
                              "check that SIGHTQL_CHAT_API_BASE is an OpenAI-compatible /v1 endpoint") from None
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str) or not content.strip():
        raise GenerationError(f"{_where(provider)} answered with an empty message; try again or another model")
    return content.strip()
