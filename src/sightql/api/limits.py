"""How much one request may carry, checked before and while its body arrives.

The declared Content-Length is checked before any byte is read, by the endpoint that reads a
body once the token was checked (inputs.py), so a request without a token is a 401 whatever its
size; and the body is counted as it streams in (a chunked upload declares no length), so no
request larger than the limit is ever held in memory or spooled to disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from sightql.config import Settings

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class ApiLimits:
    """``max_request_bytes``: a whole request body (api_max_request_bytes, 20 MiB); ``max_images``: images
    in one request (api_max_images, 64); ``max_image_bytes``: one image (max_image_bytes); ``lock_wait``:
    seconds a request waits for a busy warehouse (lock_wait). Each from the config file or its
    ``SIGHTQL_*`` variable (sightql.config)."""

    max_request_bytes: int = Settings.api_max_request_bytes
    max_images: int = Settings.api_max_images
    max_image_bytes: int = Settings.max_image_bytes
    lock_wait: float = Settings.lock_wait

    @classmethod
    def from_env(cls) -> "ApiLimits":
        settings = Settings.from_env()
        return cls(
            max_request_bytes=settings.api_max_request_bytes,
            max_images=settings.api_max_images,
            max_image_bytes=settings.max_image_bytes,
            lock_wait=settings.lock_wait,
        )


class RequestTooLarge(Exception):
    """The body grew past the limit while it was being read."""


def too_large_message(max_bytes: int, size: int | None = None) -> str:
    what = f"the request is {size:,} bytes, over" if size is not None else "the request body went over"
    return (
        f"{what} the {max_bytes:,}-byte limit; send fewer or smaller images per request, "
        "or start the server with a larger SIGHTQL_API_MAX_REQUEST_BYTES"
    )


class BodySizeLimit:
    """ASGI middleware: 413 for a body that grows past the limit while it is read."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestTooLarge(too_large_message(self.max_bytes))
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except RequestTooLarge as exc:
            if started:
                raise
            await _send_413(send, str(exc))


async def _send_413(send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
