"""`sightql serve` as a real process on a free loopback port, for the API and concurrency tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(home: Path, port: int, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sightql", "serve", "-w", str(home), "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_until_up(server: subprocess.Popen, base: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited with {server.returncode}: {server.stderr.read()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("server did not answer /healthz within 120 s")


def stop(server: subprocess.Popen) -> str:
    server.terminate()
    _, err = server.communicate(timeout=30)
    return err


@dataclass
class Server:
    base: str  # e.g. http://127.0.0.1:41234
    process: subprocess.Popen
    stderr: str = ""  # filled in when it has stopped


@contextmanager
def running_server(home: Path, env: dict[str, str]) -> Iterator[Server]:
    """`sightql serve` on a free port, answering /healthz; stopped (and its stderr kept) on exit."""
    port = free_port()
    server = Server(f"http://127.0.0.1:{port}", serve(home, port, env))
    try:
        wait_until_up(server.process, server.base)
        yield server
    finally:
        server.stderr = stop(server.process)
