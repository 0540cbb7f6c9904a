"""A loopback HTTP server speaking the OpenAI Images API, standing in for the paid remote one in tests.

It answers ``POST /v1/images/generations`` with ``{"created": ..., "data": [{"b64_json": ...}]}``
(or a ``url`` it also serves, or an OpenAI-style error) and records every request it got.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any


@dataclass
class FakeImagesAPI:
    image: bytes
    mode: str = "b64_json"  # "b64_json", "url", or "error"
    status: int = 200
    error: dict[str, Any] | None = None
    delay: float = 0.0
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                api.requests.append(Recorded("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, None))
                if self.path == "/files/generated.png":
                    self._send(200, api.image, "image/png")
                else:
                    self._send(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                api.requests.append(Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if api.delay:
                    time.sleep(api.delay)
                if self.path != "/v1/images/generations":
                    self._send(404, b'{"error": {"message": "no such route"}}', "application/json")
                elif api.mode == "error":
                    self._send(api.status, json.dumps({"error": api.error}).encode(), "application/json")
                else:
                    item = (
                        {"b64_json": base64.b64encode(api.image).decode(), "revised_prompt": f"{body['prompt']}, photo"}
                        if api.mode == "b64_json"
                        else {"url": f"{api.base_origin}/files/generated.png"}
                    )
                    answer = json.dumps({"created": int(time.time()), "data": [item]}).encode()
                    self._send(200, answer, "application/json")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_origin(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return f"{self.base_origin}/v1"

    @property
    def generations(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
