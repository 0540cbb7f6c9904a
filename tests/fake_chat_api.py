"""A loopback HTTP server speaking the OpenAI chat-completions API with images, standing in for a paid
vision-language model (OpenAI, vLLM, Ollama) in tests.

It answers ``POST /v1/chat/completions`` the way OpenAI does, after checking the request as a real
server would (JSON body, a model, a user message with a text part and an ``image_url`` part whose
URL is a ``data:image/...;base64,`` JPEG or PNG). It "looks" at the image: the answer is chosen by the
image's mean colour, the nearest of ``colours``. Each colour has a script of replies, one per request
for that colour (the last one repeats): an answer, an HTTP status (with headers such as
``Retry-After``), or a sleep before answering. Every request is recorded, its decoded image included.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30),
           "magenta": (220, 30, 220), "cyan": (30, 220, 220), "grey": (128, 128, 128), "black": (10, 10, 10)}


@dataclass(frozen=True)
class Reply:
    """One scripted reply: ``text`` answered after ``sleep`` s, or an HTTP ``status`` with ``headers``."""

    text: str | None = None
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    sleep: float = 0.0
    error: str = "scripted failure"


def answer(text: str, sleep: float = 0.0) -> Reply:
    return Reply(text=text, sleep=sleep)


def failure(status: int, message: str = "scripted failure", **headers: str) -> Reply:
    return Reply(status=status, headers=tuple((k.replace("_", "-"), v) for k, v in headers.items()), error=message)


@dataclass
class ChatRequest:
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any
    colour: str | None = None
    image_size: tuple[int, int] | None = None  # (width, height) of the image received
    image_format: str | None = None
    problem: str | None = None  # why the request was refused as malformed
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class FakeChatAPI:
    scripts: dict[str, list[Reply]] = field(default_factory=dict)  # colour -> replies
    requests: list[ChatRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        api = self
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> None:
                body = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in headers:
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a timeout)
                    pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = None
                request = ChatRequest(self.path, headers, body)
                request.problem = api._inspect(request)
                with api._lock:
                    api.requests.append(request)
                    attempt = sum(1 for r in api.requests if r.colour == request.colour and r.colour is not None)
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "no such route", "type": "invalid_request_error"}})
                if request.problem:
                    return self._send(400, {"error": {"message": request.problem, "type": "invalid_request_error"}})
                script = api.scripts.get(request.colour or "", [answer(f"a {request.colour} picture")])
                reply = script[min(attempt, len(script)) - 1]
                if reply.sleep:
                    time.sleep(reply.sleep)
                if reply.status != 200:
                    return self._send(reply.status, {"error": {"message": reply.error, "type": "server_error"}},
                                      reply.headers)
                self._send(200, {
                    "id": f"chatcmpl-{len(api.requests)}", "object": "chat.completion", "created": int(time.time()),
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": reply.text}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 2, "total_tokens": 102},
                })

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _inspect(self, request: ChatRequest) -> str | None:
        """Fill in the image's colour and size; the reason the request is malformed, if it is."""
        body = request.body
        if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
            return "the request has no model"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "the request has no messages"
        parts = messages[-1].get("content") if isinstance(messages[-1], dict) else None
        if not isinstance(parts, list):
            return "the last message has no content parts"
        images = [p for p in parts if isinstance(p, dict) and p.get("type") == "image_url"]
        texts = [p for p in parts if isinstance(p, dict) and p.get("type") == "text"]
        if len(images) != 1 or not texts:
            return "the last message needs one text part and one image_url part"
        url = (images[0].get("image_url") or {}).get("url", "")
        prefix, _, payload = url.partition(";base64,")
        if not prefix.startswith("data:image/"):
            return "the image_url is not a base64 data URL"
        try:
            image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
            image.load()
        except (binascii.Error, ValueError, OSError):
            return "the image_url holds no image"
        request.image_size, request.image_format = image.size, image.format
        mean = image.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
        request.colour = min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], mean)))
        return None

    def prompt(self, request: ChatRequest) -> str:
        """The text the client sent with the image."""
        parts = request.body["messages"][-1]["content"]
        return "".join(p["text"] for p in parts if p.get("type") == "text")

    def count(self, colour: str) -> int:
        return sum(1 for r in self.requests if r.colour == colour)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
