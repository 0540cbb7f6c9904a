"""Latency of the HTTP API (`sightql serve`) against the same classification in process.

    python benchmarks/api_latency.py              # 20 requests per case
    python benchmarks/api_latency.py --repeat 50

Starts `sightql serve` on a loopback port over a fresh warehouse, warms the model up, then
times sequential POST /v1/models/imagenet/predict requests (multipart, 1, 8 and 32 generated
500x375 JPEGs) and GET /v1/models, and the same images through `session.classify` in this
process (the library call the API makes). Each request opens and closes the warehouse, so the
difference is what HTTP, auth, upload parsing and the per-request session cost.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import generated_jpegs, print_table  # noqa: E402

import sightql  # noqa: E402

TOKEN = "benchmark-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(home: Path, port: int) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "SIGHTQL_API_TOKEN": TOKEN}
    server = subprocess.Popen(
        [sys.executable, "-m", "sightql", "serve", "-w", str(home), "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the server did not answer /healthz within 120 s")


def timed(call, repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def summary(seconds: list[float]) -> str:
    return f"median {1000 * statistics.median(seconds):.1f} ms, min {1000 * min(seconds):.1f} ms"


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20, help="requests per case (default 20)")
    args = parser.parse_args()
    images = generated_jpegs(32)
    rows: list[tuple[str, str]] = [("machine", f"{os.cpu_count()} CPU cores"), ("requests per case", str(args.repeat))]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "wh"
        with sightql.connect(home) as session:
            session.predictor("imagenet")  # export once, outside every timing
        port = free_port()
        server = start_server(home, port)
        url = f"http://127.0.0.1:{port}/v1/models/imagenet/predict"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            with httpx.Client(timeout=120) as client:
                def post(batch: list[bytes]) -> None:
                    files = [("file", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(batch)]
                    response = client.post(url, headers=headers, files=files)
                    response.raise_for_status()

                post(images[:1])  # the server loads the model on its first request
                for size in (1, 8, 32):
                    api = timed(lambda: post(images[:size]), args.repeat)
                    with sightql.connect(home, lock_wait=30) as session:
                        session.classify(images[:size])  # warm
                        local = timed(lambda: session.classify(images[:size]), args.repeat)
                    rows.append((f"POST predict, {size} image(s)", summary(api)))
                    rows.append((f"session.classify, {size} image(s), in process", summary(local)))
                    rows.append((f"API / in process, {size} image(s) (medians)",
                                 f"{statistics.median(api) / statistics.median(local):.2f}"))
                models = timed(lambda: client.get(f"http://127.0.0.1:{port}/v1/models", headers=headers).raise_for_status(),
                               args.repeat)
                rows.append(("GET /v1/models", summary(models)))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print_table("HTTP API latency (sequential requests, loopback)", rows)


if __name__ == "__main__":
    main()
