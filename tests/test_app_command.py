"""`sightql app`: the Streamlit server starts on the warehouse and answers over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

CLI = [sys.executable, "-m", "sightql"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode("utf-8", "replace")


def wait_until_healthy(url: str, server: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}: {server.stdout.read()}")
        try:
            if get(url)[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    pytest.fail(f"no answer from {url} within {seconds} s")


def test_the_app_serves_on_a_loopback_port(tmp_path):
    warehouse = tmp_path / "warehouse"
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path)}  # Streamlit may write its settings under ~/.streamlit
    env.pop("SIGHTQL_HOME", None)
    server = subprocess.Popen(
        [*CLI, "app", "--warehouse", str(warehouse), "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/_stcore/health", server)
        status, page = get(f"http://127.0.0.1:{port}/")
        assert status == 200 and "<html" in page.lower()
        assert get(f"http://127.0.0.1:{port}/_stcore/health") == (200, "ok")
        # The server is the process `sightql app` became, with the warehouse in its environment.
        environ = open(f"/proc/{server.pid}/environ", "rb").read().split(b"\0")
        assert f"SIGHTQL_HOME={warehouse.resolve()}".encode() in environ
        cmdline = open(f"/proc/{server.pid}/cmdline", "rb").read().split(b"\0")
        for flag in (b"--server.headless", b"--browser.gatherUsageStats", b"--server.address"):
            assert flag in cmdline
        assert cmdline[cmdline.index(b"--browser.gatherUsageStats") + 1] == b"false"
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert f"serving warehouse {warehouse} at http://127.0.0.1:{port}" in output
    assert "Traceback" not in output


def test_a_bad_port_is_one_sentence():
    result = subprocess.run([*CLI, "app", "--port", "70000"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --port 70000 is not a TCP port; use one from 1 to 65535, e.g. 8501"
