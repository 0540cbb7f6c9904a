"""Latency of the HTTP API (`sightql serve`) against the same classification in process.

    python benchmarks/api_latency.py              # 20 requests per case
    python benchmarks/api_latency.py --repeat 50
    python benchmarks/api_latency.py --during-job --rows 1500   # idle against during `sightql predict`

Starts `sightql serve` on a loopback port over a fresh warehouse, warms the model up, then
times sequential POST /v1/models/imagenet/predict requests (multipart, 1, 8 and 32 generated
500x375 JPEGs) and GET /v1/models, and the same images through `session.classify` in this
process (the library call the API makes). Each request opens and closes the warehouse, so the
difference is what HTTP, auth, upload parsing and the per-request session cost.

``--during-job`` times the same requests while a `sightql predict` process classifies a table of
``--rows`` generated JPEGs on the same warehouse, against idle in the same run, and splits the
cause: a CPU-only step (how much the job's CPU use slows this machine), an open and close of the
warehouse alone (CPU plus the lock wait between the job's short steps),
GET /v1/models (an open, no model) and POST predict (an open and the model: CPU shared with the
job). The job runs as `sightql predict` does by default, at nice +10 (``job_nice``); ``--job-nice N``
sets SIGHTQL_JOB_NICE=N for it (0: the shell's priority, as before jobs lowered their own).
"""

from __future__ import annotations

import argparse
import hashlib
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20, help="requests per case (default 20)")
    parser.add_argument("--during-job", action="store_true", help="idle against during a `sightql predict` job")
    parser.add_argument("--rows", type=int, default=1500, help="rows the job predicts (--during-job; default 1500)")
    parser.add_argument("--job-nice", type=int, help="SIGHTQL_JOB_NICE of the job (--during-job; default: the product's, 10)")
    args = parser.parse_args()
    if args.during_job:
        during_job(args.repeat, args.rows, args.job_nice)
    else:
        api_against_in_process(args.repeat)


def api_against_in_process(repeat: int) -> None:
    import httpx

    images = generated_jpegs(32)
    rows: list[tuple[str, str]] = [("machine", f"{os.cpu_count()} CPU cores"), ("requests per case", str(repeat))]
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
                    api = timed(lambda: post(images[:size]), repeat)
                    with sightql.connect(home, lock_wait=30) as session:
                        session.classify(images[:size])  # warm
                        local = timed(lambda: session.classify(images[:size]), repeat)
                    rows.append((f"POST predict, {size} image(s)", summary(api)))
                    rows.append((f"session.classify, {size} image(s), in process", summary(local)))
                    rows.append((f"API / in process, {size} image(s) (medians)",
                                 f"{statistics.median(api) / statistics.median(local):.2f}"))
                models = timed(lambda: client.get(f"http://127.0.0.1:{port}/v1/models", headers=headers).raise_for_status(),
                               repeat)
                rows.append(("GET /v1/models", summary(models)))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print_table("HTTP API latency (sequential requests, loopback)", rows)


def image_table(home: Path, rows: int) -> None:
    """Table ``imgs`` of ``rows`` generated 160x120 JPEGs, keyed by relative_path, as load_images makes it."""
    import pyarrow as pa

    images = generated_jpegs(rows, size=(160, 120))
    table = pa.table({"relative_path": [f"img-{i:05d}.jpg" for i in range(rows)], "image": pa.array(images, pa.binary()),
                      "sha256": [hashlib.sha256(b).hexdigest() for b in images]})
    with sightql.connect(home) as session:
        session.predictor("imagenet")  # export once, outside every timing
        session.sql("CREATE TABLE imgs (relative_path VARCHAR PRIMARY KEY, image BLOB, sha256 VARCHAR)")
        session.warehouse.connection().register("new_rows", table)
        session.sql("INSERT INTO imgs SELECT * FROM new_rows")


def during_job(repeat: int, rows: int, job_nice: int | None) -> None:
    """Median latencies idle, then while `sightql predict` runs on ``rows`` images, in one run."""
    import httpx

    photo = generated_jpegs(1)[0]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "wh"
        image_table(home, rows)
        port = free_port()
        server = start_server(home, port)
        base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
        try:
            with httpx.Client(timeout=120) as client:
                block = os.urandom(16 << 20)
                cases = {
                    "CPU alone: sha256 of 16 MB (this process, no warehouse)": lambda: hashlib.sha256(block).digest(),
                    "open and close the warehouse (this process)": lambda: sightql.connect(home).close(),
                    "GET /v1/models": lambda: client.get(f"{base}/v1/models", headers=headers).raise_for_status(),
                    "POST predict, 1 image": lambda: client.post(
                        f"{base}/v1/models/imagenet/predict", headers=headers,
                        files=[("file", ("a.jpg", photo, "image/jpeg"))]).raise_for_status(),
                }
                for call in cases.values():
                    call()  # warm: the server loads the model on its first request
                idle = {name: timed(call, repeat) for name, call in cases.items()}
                job = start_job(home, job_nice)
                try:
                    time.sleep(5)  # past the job's start-up (imports, model load, plan) into its chunks
                    busy = {name: timed(call, repeat) for name, call in cases.items()}
                    overlapped = job.poll() is None
                    started = time.perf_counter()
                    out, err = job.communicate()
                finally:
                    if job.poll() is None:
                        job.kill()
        finally:
            server.terminate()
            server.wait(timeout=30)
    if job.returncode != 0:
        raise SystemExit(f"the job failed: {err[-2000:]}")
    table: list[tuple[str, str]] = [
        ("machine", f"{os.cpu_count()} CPU cores"), ("requests per case", str(repeat)),
        ("job", f"sightql predict, {rows} rows of 160x120 JPEGs, "
                f"{'job_nice default (10)' if job_nice is None else f'SIGHTQL_JOB_NICE={job_nice}'}"),
        ("job still running after the last timed request", "yes" if overlapped else "NO: use more --rows"),
        ("job's report", out.strip().splitlines()[-1] if out.strip() else "-"),
        ("job ran on after the timings", f"{time.perf_counter() - started:.1f} s"),
    ]
    for name in cases:
        ratio = statistics.median(busy[name]) / statistics.median(idle[name])
        table += [(f"{name}: idle", summary(idle[name])), (f"{name}: during the job", summary(busy[name])),
                  (f"{name}: during / idle (medians)", f"{ratio:.2f}")]
    print_table("HTTP API latency during a `sightql predict` job against idle", table)


def start_job(home: Path, nice: int | None) -> subprocess.Popen:
    command = [sys.executable, "-m", "sightql", "predict", "-m", "imagenet", "-t", "imgs", "--into", "preds",
               "--no-progress", "-w", str(home)]
    env = {k: v for k, v in os.environ.items() if k != "SIGHTQL_JOB_NICE"}
    if nice is not None:
        env["SIGHTQL_JOB_NICE"] = str(nice)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


if __name__ == "__main__":
    main()
