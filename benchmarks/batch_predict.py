"""Benchmark batch predict (session.predict) against its ceilings, in memory, and against Daft and Ray Data.

    python benchmarks/batch_predict.py                          # 1,000 JPEGs for img/s; RSS at 5k and 50k rows
    python benchmarks/batch_predict.py --n 300 --rss-rows 2000 20000
    python benchmarks/batch_predict.py --compare-python /tmp/bench-venv/bin/python   # adds Daft and Ray Data
    python benchmarks/batch_predict.py --file-mode --n 500 --repeats 2   # BLOB table against FILE table

Prints, from one run on one machine:
  (a) model-only ONNX Runtime throughput on preprocessed tensors, batch 32
  (b) decode + preprocess only (the same thread pool predict uses)
  (c) session.predict, local runner, over an n-row table (fresh process)
  (d) session.predict, Dask runner (local cluster, one single-thread worker process per core; fresh process),
      once with the cluster's start inside the timing and once on a cluster started beforehand
  (e) peak RSS of the local runner at 5k and 50k rows (fresh processes); see --rss-* below
  (f) the same images and model through Daft and Ray Data (run by --compare-python, where they are installed)
and the ratios c / (1/(1/a + 1/b)), d / c, RSS 50k / RSS 5k, c / f.

``--file-mode`` instead runs (c) and (d) over the same JPEGs stored twice: a BLOB table, and files in
a local stage with a table of FILE values naming them (``to_file``). (d) runs on a cluster this
process starts beforehand, so the scheduler is not in the driver (the child process calling
predict), and reports the driver's CPU time per image (its process CPU time over the run /
images): with a BLOB table the driver reads every image from DuckDB and writes it to Parquet for
the workers; with a FILE table it sends references only. Target: FILE >= 0.95 x BLOB img/s.
Then one process runs the local runner over slices of --slice-rows rows, the BLOB and the FILE table
in turn, so that both meet the same load from other processes (separate runs minutes apart on a
shared machine differed by up to 2x from one repeat to the next).

Memory runs (e) store --rss-distinct distinct JPEGs (--rss-size, default the same 500x375) repeated to the
row count (each row still its own BLOB: about 3.5 GB in DuckDB at 50k rows) and use a tiny ONNX classifier
(32x32 input): what could grow with the table is the pipeline, not the model, and 50k rows through
EfficientNet on two cores would take 20+ minutes. Both sizes exceed DuckDB's page cache
(SIGHTQL_MEMORY_LIMIT), so the comparison is not flattered by a small table fitting in it.

``--peers`` (with ``--compare-python``) compares ``SELECT classify(MODEL, image) FROM t`` against
Daft and Ray Data written as their own docs write image classification (benchmarks/_peers_native.py:
files on disk, the framework's own decode and resize to 224x224, a class UDF normalising and running
the fp32 ONNX export of the built-in model in ONNX Runtime, one instance per core, batch 32), and
against the same-UDF runs of (f), on three image sets, each written as JPEG files in a folder (for
the peers) and into a BLOB table (for SightQL):

    generated  2,000 generated 500x375 JPEGs (_common.generated_jpegs)
    textile    2,000 real 250x250 JPEGs of the conformal_clip_data package (sorted paths, the first 2,000)
    large      300 generated 3000x2000 JPEGs

    python benchmarks/batch_predict.py --peers --compare-python /tmp/bench-venv/bin/python
    python benchmarks/batch_predict.py --peers --compare-python /tmp/bench-venv/bin/python \
        --set-sizes 64 64 16                        # smoke run (or --n-scale 0.05)
    python benchmarks/batch_predict.py --peers --compare-python /tmp/bench-venv/bin/python \
        --sets generated large --models imagenet imagenet@int8

Each SightQL model of --models (default: imagenet imagenet@int8) is timed in a fresh process, loaded
and warmed up before the clock starts; a model reference that does not resolve (the int8 built-in
before it exists) prints "n/a (not built yet)", one that its build refuses (the int8 accuracy gate)
"n/a (not built: ...)". A query that runs out of DuckDB's memory limit (the BLOB table of 3000x2000
JPEGs does at the default 256MB) is run again at --retry-memory-limit (2GB), and the row says so.
``--file-tables`` also times each model over a FILE table of the same JPEGs (a local stage; what
``sightql load`` makes by default). Each peer runs in a fresh process of the peer venv; its clock
includes its workers' start and model load. Prints one table per set and a last JSON line with every
figure.

The peer venv (a separate venv, so that Daft's and Ray's pins do not meet SightQL's; SightQL's source
goes on its PYTHONPATH for the same-UDF runs, since ``pip install -e`` would pull a second PyTorch):

    python3.11 -m venv /tmp/bench-venv
    /tmp/bench-venv/bin/pip install --upgrade pip
    /tmp/bench-venv/bin/pip install daft 'ray[data]' onnxruntime pillow duckdb numpy pyarrow fsspec
    /tmp/bench-venv/bin/pip install pydantic pydantic-settings tenacity psutil filelock  # same-UDF runs only

(measured with daft 0.7.26, ray 2.60.0, onnxruntime 1.32.0, pillow 13.0.0, pyarrow 25.0.1, numpy 2.4.6,
duckdb 2.0.1.) The last line is what the same-UDF runs' imports of SightQL's modules need (its config
uses pydantic); the native runs import nothing from SightQL. Without it those rows read "did not run:
ModuleNotFoundError: No module named 'pydantic'" (Ray) or "... failed to initialize" (Daft).

``--device cuda`` runs benchmarks/gpu_predict.py (``gpu_predict.main(["--device", "cuda", "--n", N])``)
instead of any of the above.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_file_table, generated_jpegs, median, peak_rss_mb, print_table, run_child  # noqa: E402
from sql_classify import decode_only, model_only  # noqa: E402

import sightql  # noqa: E402

HERE = Path(__file__).resolve()


def build_table(home: Path, images: list[bytes], rows: int) -> None:
    """``rows`` rows cycling through ``images``, inserted in slices (never all rows in Python at once)."""
    import pyarrow as pa

    with sightql.connect(home) as s:
        s.sql("CREATE OR REPLACE TABLE bench (relative_path VARCHAR PRIMARY KEY, image BLOB)")
        step = 2000
        for start in range(0, rows, step):
            ids = range(start, min(rows, start + step))
            batch = pa.table({"relative_path": [f"{i:07d}.jpg" for i in ids],
                              "image": pa.array([images[i % len(images)] for i in ids], pa.binary())})
            s.con.register("_b", batch)
            s.sql("INSERT INTO bench SELECT * FROM _b")
            s.con.unregister("_b")
        s.sql("CHECKPOINT")


def log_tiny_model(home: Path) -> str:
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, 10),
    ).eval()
    path = home.parent / "tiny.onnx"
    torch.onnx.export(module, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    with sightql.connect(home) as s:
        s.registry.log_model(path, "tiny", labels=[f"class{i}" for i in range(10)], input={"size": 32})
    return "tiny"


def child(home: Path, model: str, runner: str, table: str = "bench") -> dict:
    with sightql.connect(home) as s:
        predictor = s.predictor(model)  # load and warm up outside the timing (Dask workers load theirs inside it)
        spec = predictor.card.input
        predictor.predict(np.zeros((32, spec.channels, spec.height, spec.width), np.float32))
        cluster = None
        chosen: Any = runner
        if runner == "dask-started":  # time the run on a cluster that is already up, as a service would have
            from sightql.inference.runners import DaskRunner
            from sightql.inference.runners.dask_cluster import local_cluster

            cluster = local_cluster(os.cpu_count() or 1)  # the cluster runner='dask' starts, started beforehand
            chosen = DaskRunner(scheduler=cluster.scheduler_address)
        elif runner.startswith("tcp://"):  # a cluster started by the parent: its scheduler is not in this process
            import distributed  # noqa: F401  imported outside the timing, as the model is loaded outside it

            from sightql.inference.runners import DaskRunner

            chosen = DaskRunner(scheduler=runner)
        start, cpu_start = time.perf_counter(), time.process_time()
        report = s.predict(model, table, into="preds", runner=chosen, progress=False)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if cluster is not None:
            cluster.close()
        stored = s.sql("SELECT count(*) AS n FROM preds WHERE model_version IS NOT NULL").to_pylist()[0]["n"]
    return {"n": report.predicted, "stored": stored, "errors": report.errors, "seconds": seconds, "cpu_seconds": cpu,
            "peak_rss_mb": peak_rss_mb()}


def interleaved(home: Path, n: int, slice_rows: int) -> dict:
    """The local runner over slices of ``slice_rows`` rows, the BLOB and the FILE table in turn (which goes
    first alternates), in one process: both tables meet the same load from other processes, a few
    seconds apart, where separate runs minutes apart do not. Totals per table."""
    totals = {t: {"n": 0, "seconds": 0.0, "cpu_seconds": 0.0} for t in ("bench", "bench_files")}
    with sightql.connect(home) as s:
        predictor = s.predictor("imagenet")
        spec = predictor.card.input
        predictor.predict(np.zeros((32, spec.channels, spec.height, spec.width), np.float32))
        for index, low in enumerate(range(0, n, slice_rows)):
            bounds = [f"{low:07d}.jpg", f"{low + slice_rows:07d}.jpg"]
            for table in (("bench", "bench_files") if index % 2 == 0 else ("bench_files", "bench")):
                start, cpu_start = time.perf_counter(), time.process_time()
                report = s.predict("imagenet", table, into=f"preds_{table}", progress=False,
                                   where="relative_path >= ? AND relative_path < ?", params=bounds)
                totals[table]["seconds"] += time.perf_counter() - start
                totals[table]["cpu_seconds"] += time.process_time() - cpu_start
                totals[table]["n"] += report.predicted
    return totals


def memory_runs(args: argparse.Namespace, tmp: Path) -> list[dict]:
    """The local runner over tables of each --rss-rows size, each in a fresh process; one at a time on disk."""
    import shutil

    images = generated_jpegs(args.rss_distinct, size=tuple(args.rss_size), seed=1)
    results = []
    for rows in args.rss_rows:
        home = tmp / f"rss{rows}" / "wh"
        print(f"RSS table of {rows} rows ...", flush=True)
        build_table(home, images, rows)
        model = log_tiny_model(home)
        results.append(run_child(HERE, "--child", str(home), model, "local", "bench"))
        shutil.rmtree(home.parent)
    return results


def compare_frameworks(python: str, parquet: Path, model_dir: Path, workers: int) -> dict:
    script = HERE.parent / "_frameworks.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    out: dict = {}
    for framework in ("daft", "ray"):
        done = subprocess.run([python, str(script), framework, str(parquet), str(model_dir), str(workers)],
                              capture_output=True, text=True, env=env)
        lines = done.stdout.strip().splitlines()
        if done.returncode == 0 and lines:
            out[framework] = json.loads(lines[-1])
        else:
            out[framework] = {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return out


def file_mode(args: argparse.Namespace) -> None:
    """(c) and (d) over a BLOB table and the FILE table of the same JPEGs, alternating, fresh driver processes."""
    from sightql.inference.runners.dask_cluster import local_cluster

    workers = os.cpu_count() or 1
    print(f"generating {args.n} JPEGs at 500x375 ...", flush=True)
    images = generated_jpegs(args.n)
    tables = {"bench": "BLOB", "bench_files": "FILE"}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "main" / "wh"
        build_table(home, images, args.n)
        with sightql.connect(home) as s:
            s.predictor("imagenet")  # exported once, outside every timing
            add_file_table(s)
            s.sql("CREATE TABLE warm (relative_path VARCHAR PRIMARY KEY, image BLOB)")
            s.sql("INSERT INTO warm SELECT * FROM bench ORDER BY relative_path LIMIT 16")
        cluster = local_cluster(workers)  # the scheduler lives here, not in the driver
        runners = {"local": "local", "dask": cluster.scheduler_address}
        runs: dict[tuple[str, str], list[dict]] = {(r, t): [] for r in runners for t in tables}
        try:
            print("warming the cluster up (its workers load the model) ...", flush=True)
            run_child(HERE, "--child", str(home), "imagenet", runners["dask"], "warm")
            for repeat in range(args.repeats):
                for (runner, table), done in runs.items():
                    print(f"repeat {repeat + 1}: {runner} runner, {tables[table]} table ...", flush=True)
                    with sightql.connect(home) as s:
                        s.sql("DROP TABLE IF EXISTS preds")
                    done.append(run_child(HERE, "--child", str(home), "imagenet", runners[runner], table))
        finally:
            cluster.close()
        print(f"local runner, BLOB and FILE slices of {args.slice_rows} rows in turn ...", flush=True)
        turns = run_child(HERE, "--interleaved-child", str(home), "--n", str(args.n), "--slice-rows", str(args.slice_rows))
    rate = {key: median([r["n"] / r["seconds"] for r in done]) for key, done in runs.items()}
    best = {key: max(r["n"] / r["seconds"] for r in done) for key, done in runs.items()}
    cpu_ms = {key: median([1000 * r["cpu_seconds"] / max(1, r["n"]) for r in done]) for key, done in runs.items()}
    rows = [("machine", f"{workers} CPU cores"),
            ("images (n)", f"{args.n} JPEGs, 500x375, EfficientNet-Lite0; {args.repeats} repeats, medians (each run)")]
    for runner, label in (("local", "(c) local runner"), ("dask", f"(d) dask runner, started cluster, {workers} workers")):
        for table, kind in tables.items():
            done = runs[(runner, table)]
            each = ", ".join(f"{r['n'] / r['seconds']:.1f}" for r in done)
            rows.append((f"{label}, {kind} table", f"{rate[(runner, table)]:.1f} img/s "
                         f"({each}; {done[0]['stored']} rows stored, "
                         f"{done[0]['errors']} errors); driver CPU {cpu_ms[(runner, table)]:.2f} ms/img"))
        rows.append((f"{label}: FILE / BLOB img/s, medians; best runs (target >= 0.95)",
                     f"{rate[(runner, 'bench_files')] / rate[(runner, 'bench')]:.2f}; "
                     f"{best[(runner, 'bench_files')] / best[(runner, 'bench')]:.2f}"))
    for table, kind in tables.items():
        done = turns[table]
        rows.append((f"(c) local runner, {kind} slices of {args.slice_rows} rows in turn, one process",
                     f"{done['n'] / done['seconds']:.1f} img/s ({done['n']} rows); "
                     f"CPU {1000 * done['cpu_seconds'] / max(1, done['n']):.2f} ms/img"))
    rows.append(("(c) local runner in turn: FILE / BLOB img/s (target >= 0.95)",
                 f"{(turns['bench_files']['n'] / turns['bench_files']['seconds']) / (turns['bench']['n'] / turns['bench']['seconds']):.2f}"))
    rows.append(("(c) BLOB / FILE CPU per image (local runner; less sensitive to other load)",
                 f"{cpu_ms[('local', 'bench')] / cpu_ms[('local', 'bench_files')]:.2f}"))
    rows.append(("(d) driver CPU per image, BLOB (before) -> FILE (after)",
                 f"{cpu_ms[('dask', 'bench')]:.2f} -> {cpu_ms[('dask', 'bench_files')]:.2f} ms/img"))
    print_table("Batch predict benchmark: FILE table against BLOB table", rows)


# ---- --peers: SightQL against Daft and Ray Data as their docs write it, on three image sets ----

PEER_SETS = {  # name: (default size, description)
    "generated": (2000, "generated JPEGs, 500x375"),
    "textile": (2000, "real textile JPEGs, 250x250 (conformal_clip_data)"),
    "large": (300, "generated JPEGs, 3000x2000"),
}


def textile_paths() -> list[Path]:
    import conformal_clip_data

    root = Path(conformal_clip_data.__file__).resolve().parent / "data" / "textile_images"
    return sorted(root.glob("**/*.jpg"))


def write_image_set(name: str, n: int, folder: Path) -> int:
    """``n`` JPEGs of set ``name`` in ``folder`` as 00000.jpg, ...; kept and reused if already complete."""
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == n and (folder / ".complete").exists():
        return n
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if name == "textile":
        available = textile_paths()
        if len(available) < n:
            raise SystemExit(f"the textile set has {len(available)} JPEGs, fewer than {n}")
        data: list[bytes] = [path.read_bytes() for path in available[:n]]
    elif name == "generated":
        data = generated_jpegs(n, size=(500, 375))
    else:
        data = generated_jpegs(n, size=(3000, 2000), seed=2)
    for index, blob in enumerate(data):
        (folder / f"{index:05d}.jpg").write_bytes(blob)
    (folder / ".complete").write_text("")
    return n


def load_image_table(home: Path, table: str, folder: Path) -> None:
    import pyarrow as pa

    paths = sorted(folder.glob("*.jpg"))
    with sightql.connect(home) as s:
        s.sql(f"CREATE OR REPLACE TABLE {table} (relative_path VARCHAR PRIMARY KEY, image BLOB)")
        for start in range(0, len(paths), 100):
            chunk = paths[start:start + 100]
            batch = pa.table({"relative_path": [p.name for p in chunk],
                              "image": pa.array([p.read_bytes() for p in chunk], pa.binary())})
            s.con.register("_b", batch)
            s.sql(f"INSERT INTO {table} SELECT * FROM _b")
            s.con.unregister("_b")
        s.sql("CHECKPOINT")


def load_file_table(home: Path, table: str, folder: Path) -> str:
    """The FILE twin of ``table`` (SightQL's default for large photos: ``sightql load`` keeps references):
    the folder's JPEGs copied into a local stage, and a table of FILE values naming them (``to_file``)."""
    files_table = f"{table}_files"
    with sightql.connect(home) as s:
        stage = s.create_stage(files_table, exist_ok=True)
        for path in sorted(folder.glob("*.jpg")):
            stage.write_bytes(path.name, path.read_bytes())
        s.sql(f"CREATE OR REPLACE TABLE {files_table} (relative_path VARCHAR PRIMARY KEY, image file)")
        s.sql(f"INSERT INTO {files_table} SELECT relative_path, to_file('@{files_table}', relative_path) FROM {table}")
        s.sql("CHECKPOINT")
    return files_table


def write_parquet(folder: Path, path: Path, rows_per_group: int = 256) -> None:
    """(relative_path, image) of the folder's JPEGs, as in the table, streamed in row groups: DuckDB's
    COPY of the whole table runs out of its 256 MB default memory limit at 2,000 500x375 JPEGs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("relative_path", pa.string()), ("image", pa.binary())])
    paths = sorted(folder.glob("*.jpg"))
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, len(paths), rows_per_group):
            chunk = paths[start:start + rows_per_group]
            writer.write_table(pa.table({"relative_path": [p.name for p in chunk],
                                         "image": pa.array([p.read_bytes() for p in chunk], pa.binary())}, schema=schema))


def sql_child(home: Path, model: str, table: str) -> dict:
    """``SELECT classify(model, image) FROM table`` in this (fresh) process, the model loaded and warmed up first."""
    from sightql.errors import ModelNotFoundError, SightQLError

    with sightql.connect(home) as s:
        try:
            predictor = s.predictor(model)  # a built-in variant is built here on first use, outside the clock
        except ModelNotFoundError as exc:
            return {"unavailable": str(exc)[:300]}
        except SightQLError as exc:  # e.g. the int8 variant refused by its accuracy gate
            return {"unavailable": f"{type(exc).__name__}: {exc}"[:300], "refused": True}
        spec = predictor.card.input
        predictor.predict(np.zeros((32, spec.channels, spec.height, spec.width), np.float32))
        quoted = model.replace("'", "''")
        start, cpu_start = time.perf_counter(), time.process_time()
        result = s.sql(f"SELECT relative_path, classify('{quoted}', image) AS c FROM {table}")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        errors = sum(1 for c in result.column("c").to_pylist() if c["error"])
    n = result.num_rows
    return {"n": n, "seconds": seconds, "img_per_s": n / seconds, "cpu_seconds": cpu, "errors": errors,
            "peak_rss_mb": peak_rss_mb()}


def sightql_run(home: Path, model: str, table: str, env: dict[str, str] | None = None) -> dict:
    try:
        return run_child(HERE, "--sql-child", str(home), model, table, env=env)
    except RuntimeError as exc:
        return {"error": (str(exc).strip().splitlines() or ["child failed"])[-1][:300]}


def run_peer(command: list[str], env: dict[str, str], timeout: float) -> dict:
    """A peer in a fresh process (its own process group, killed whole on timeout); its last stdout line is JSON."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the group this call started: the peer and its workers
        process.communicate()
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": (stderr.strip().splitlines() or ["no output"])[-1][:300]}


def peers(args: argparse.Namespace) -> None:
    if not args.compare_python:
        raise SystemExit("--peers needs --compare-python PY (a Python with daft and ray[data]; see the docstring)")
    workers = os.cpu_count() or 1
    sizes = dict(zip(PEER_SETS, args.set_sizes)) if args.set_sizes else {
        name: max(1, round(default * args.n_scale)) for name, (default, _) in PEER_SETS.items()}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    native = str(HERE.parent / "_peers_native.py")
    figures: dict[str, dict] = {}
    unavailable: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        images_root = Path(args.images_dir) if args.images_dir else Path(tmp) / "images"
        home = Path(tmp) / "wh"
        with sightql.connect(home) as s:
            from sightql.models.builtin import cached_imagenet_onnx

            onnx_path, _ = cached_imagenet_onnx(s.models_dir)  # exported once, outside every timing
        card_path = onnx_path.parent / "card.json"
        for name in args.sets:
            n = sizes[name]
            folder = images_root / f"{name}-{n}"
            print(f"[{name}] writing {n} {PEER_SETS[name][1]} to {folder} ...", flush=True)
            write_image_set(name, n, folder)
            table = f"bench_{name}"
            load_image_table(home, table, folder)
            parquet = Path(tmp) / f"{table}.parquet"
            write_parquet(folder, parquet)  # the same rows as the table, for the same-UDF runs
            result: dict[str, dict] = {}
            tables = {"sightql": table}
            if args.file_tables:
                tables["sightql_file"] = load_file_table(home, table, folder)
            for model in args.models:
                for kind, source in tables.items():
                    if model in unavailable:  # the same warehouse: not built for one set, not built for the next
                        result[f"{kind}:{model}"] = unavailable[model]
                        continue
                    print(f"[{name}] SightQL classify('{model}') over {source} ...", flush=True)
                    run = sightql_run(home, model, source)
                    if "MemoryLimitError" in run.get("error", "") and args.retry_memory_limit:
                        print(f"[{name}] ran out of DuckDB's memory limit; again at SIGHTQL_MEMORY_LIMIT="
                              f"{args.retry_memory_limit} ...", flush=True)
                        retry = sightql_run(home, model, source,
                                            {**os.environ, "SIGHTQL_MEMORY_LIMIT": args.retry_memory_limit})
                        run = {**retry, "memory_limit": args.retry_memory_limit, "default_limit_error": run["error"]}
                    if "unavailable" in run:
                        unavailable[model] = run
                    result[f"{kind}:{model}"] = run
            for framework in ("daft", "ray"):
                print(f"[{name}] {framework} as its docs write it ...", flush=True)
                result[f"{framework}_native"] = run_peer(
                    [args.compare_python, native, framework, str(folder), str(onnx_path), str(card_path), str(workers)],
                    env, args.peer_timeout)
            if not args.no_same_udf:
                for framework in ("daft", "ray"):
                    print(f"[{name}] {framework}, SightQL's decode in the UDF ...", flush=True)
                    result[f"{framework}_same_udf"] = run_peer(
                        [args.compare_python, str(HERE.parent / "_frameworks.py"), framework, str(parquet),
                         str(onnx_path.parent), str(workers)], env, args.peer_timeout)
            parquet.unlink()
            with sightql.connect(home) as s:
                for source in tables.values():
                    s.sql(f"DROP TABLE {source}")
                s.sql("CHECKPOINT")
            figures[name] = {"n": n, "runs": result}
            print_peer_table(name, n, workers, args.models, result)
    summary = {name: {"n": f["n"], **{key: rate(run) for key, run in f["runs"].items()},
                      "ratios": peer_ratios(args.models, f["runs"])} for name, f in figures.items()}
    print(json.dumps({"peers": summary, "machine": f"{workers} CPU cores", "models": args.models,
                      "runs": {name: f["runs"] for name, f in figures.items()}}))


def rate(run: dict) -> float | None:
    return run.get("img_per_s")


def describe(run: dict) -> str:
    if "unavailable" in run:
        return f"n/a (not built: {run['unavailable']})" if run.get("refused") else "n/a (not built yet)"
    if "error" in run:
        return f"did not run: {run['error']}"
    text = f"{run['img_per_s']:.1f} img/s ({run['n']} images, {run['seconds']:.1f} s"
    if "errors" in run:
        text += f", {run['errors']} errors, peak RSS {run['peak_rss_mb']:.0f} MB"
    if "version" in run:
        text += f", {run['version']}"
    if "memory_limit" in run:
        text += f"; at SIGHTQL_MEMORY_LIMIT={run['memory_limit']}: the default limit ran out of memory"
    return text + ")"


def peer_ratios(models: list[str], runs: dict) -> dict[str, float | None]:
    fp32, int8 = (rate(runs.get(f"sightql:{m}", {})) for m in ("imagenet", "imagenet@int8"))
    daft, ray = rate(runs.get("daft_native", {})), rate(runs.get("ray_native", {}))
    pairs = {"int8/fp32": (int8, fp32), "int8/daft": (int8, daft), "int8/ray": (int8, ray),
             "fp32/daft": (fp32, daft), "fp32/ray": (fp32, ray)}
    return {key: (a / b if a and b else None) for key, (a, b) in pairs.items()}


def print_peer_table(name: str, n: int, workers: int, models: list[str], runs: dict) -> None:
    labels = {"imagenet": "SightQL fp32: SELECT classify('imagenet', image)",
              "imagenet@int8": "SightQL int8: SELECT classify('imagenet@int8', image)"}
    rows = [("machine", f"{workers} CPU cores"), ("images", f"{n} {PEER_SETS[name][1]}, EfficientNet-Lite0")]
    for model in models:
        label = labels.get(model, f"SightQL: SELECT classify('{model}', image)")
        rows.append((label, describe(runs[f"sightql:{model}"])))
        if f"sightql_file:{model}" in runs:
            rows.append((label.split(":")[0] + ", FILE table (local stage, to_file)", describe(runs[f"sightql_file:{model}"])))
    rows.append(("Daft as its docs write it (decode_image, resize, @daft.cls, ORT fp32)", describe(runs["daft_native"])))
    rows.append(("Ray Data as its docs write it (read_images, map_batches actors, ORT fp32)", describe(runs["ray_native"])))
    if "daft_same_udf" in runs:
        rows.append(("Daft, same UDF (SightQL's decode + adapter, Parquet)", describe(runs["daft_same_udf"])))
        rows.append(("Ray Data, same UDF (SightQL's decode + adapter, Parquet)", describe(runs["ray_same_udf"])))
    for key, value in peer_ratios(models, runs).items():
        rows.append((key.replace("daft", "Daft native").replace("ray", "Ray native"),
                     "n/a" if value is None else f"{value:.2f}"))
    print_table(f"SightQL against peers as their docs write it: {name}", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="rows for the img/s runs (default 1000)")
    parser.add_argument("--rss-rows", type=int, nargs=2, default=[5000, 50000], help="the two table sizes for RSS")
    parser.add_argument("--rss-distinct", type=int, default=200, help="distinct JPEGs repeated in the RSS tables")
    parser.add_argument("--rss-size", type=int, nargs=2, default=[500, 375], help="JPEG size in the RSS tables")
    parser.add_argument("--rss-only", action="store_true", help="only the memory runs (e)")
    parser.add_argument("--compare-python", help="a Python with daft and ray[data] installed, for (f)")
    parser.add_argument("--file-mode", action="store_true", help="only (c) and (d), over a BLOB and a FILE table")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each runner and table in --file-mode")
    parser.add_argument("--slice-rows", type=int, default=50, help="rows per slice of the interleaved runs in --file-mode")
    parser.add_argument("--peers", action="store_true",
                        help="only SQL classify against Daft and Ray Data as their docs write it (needs --compare-python)")
    parser.add_argument("--sets", nargs="+", choices=list(PEER_SETS), default=list(PEER_SETS),
                        help="image sets for --peers (default: all three)")
    parser.add_argument("--n-scale", type=float, default=1.0,
                        help="scale the sets' sizes (2,000 / 2,000 / 300) for --peers, e.g. 0.05 for a smoke run")
    parser.add_argument("--set-sizes", type=int, nargs=3, metavar=("GENERATED", "TEXTILE", "LARGE"),
                        help="the sets' sizes for --peers (overrides --n-scale)")
    parser.add_argument("--models", nargs="+", default=["imagenet", "imagenet@int8"],
                        help="SightQL model references for --peers (default: imagenet imagenet@int8)")
    parser.add_argument("--images-dir", help="keep the sets' JPEG folders here (and reuse them) for --peers")
    parser.add_argument("--no-same-udf", action="store_true", help="--peers without the same-UDF runs of (f)")
    parser.add_argument("--file-tables", action="store_true",
                        help="--peers: also time each model over a FILE table of the same JPEGs (in a local stage)")
    parser.add_argument("--retry-memory-limit", default="2GB",
                        help="--peers: run a SightQL query that ran out of DuckDB's memory limit again at this "
                             "SIGHTQL_MEMORY_LIMIT (default 2GB; '' for no retry)")
    parser.add_argument("--peer-timeout", type=float, default=1800, help="seconds before a peer run is killed")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: run benchmarks/gpu_predict.py instead (its main(['--device', 'cuda', '--n', N]))")
    parser.add_argument("--interleaved-child", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, metavar=("HOME", "MODEL", "RUNNER", "TABLE"), help=argparse.SUPPRESS)
    parser.add_argument("--sql-child", nargs=3, metavar=("HOME", "MODEL", "TABLE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "cuda":
        try:
            import gpu_predict  # benchmarks/gpu_predict.py, imported only here: the CPU runs do not need it
        except ModuleNotFoundError as exc:
            if exc.name != "gpu_predict":
                raise
            raise SystemExit("--device cuda needs benchmarks/gpu_predict.py, which is not there") from exc
        gpu_predict.main(["--device", "cuda", "--n", str(args.n)])
        return
    if args.sql_child:
        print(json.dumps(sql_child(Path(args.sql_child[0]), args.sql_child[1], args.sql_child[2])))
        return
    if args.peers:
        peers(args)
        return
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1], args.child[2], args.child[3])))
        return
    if args.interleaved_child:
        print(json.dumps(interleaved(Path(args.interleaved_child), args.n, args.slice_rows)))
        return
    if args.file_mode:
        file_mode(args)
        return

    workers = os.cpu_count() or 1
    if args.rss_only:
        with tempfile.TemporaryDirectory() as tmp:
            for name, value in zip(args.rss_rows, memory_runs(args, Path(tmp))):
                print(f"{name} rows: peak RSS {value['peak_rss_mb']:.0f} MB, {value['n'] / value['seconds']:.0f} img/s")
        return
    print(f"generating {args.n} JPEGs at 500x375 ...", flush=True)
    images = generated_jpegs(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        main_home = Path(tmp) / "main" / "wh"
        build_table(main_home, images, args.n)
        with sightql.connect(main_home) as s:
            a = model_only(s, images, args.n)
            b = decode_only(s, images)
            from sightql.models.builtin import cached_imagenet_onnx

            onnx_path, _ = cached_imagenet_onnx(s.models_dir)
            parquet = Path(tmp) / "bench.parquet"
            s.sql(f"COPY bench TO '{parquet}' (FORMAT parquet)")  # a temp path of ours, not user input
        print("local runner ...", flush=True)
        c = run_child(HERE, "--child", str(main_home), "imagenet", "local", "bench")
        with sightql.connect(main_home) as s:
            s.sql("DROP TABLE preds")
        print("dask runner ...", flush=True)
        d = run_child(HERE, "--child", str(main_home), "imagenet", "dask", "bench")
        with sightql.connect(main_home) as s:
            s.sql("DROP TABLE preds")
        print("dask runner on a started cluster ...", flush=True)
        d2 = run_child(HERE, "--child", str(main_home), "imagenet", "dask-started", "bench")
        frameworks = {}
        if args.compare_python:
            print("daft and ray data ...", flush=True)
            frameworks = compare_frameworks(args.compare_python, parquet, onnx_path.parent, workers)

        rss = memory_runs(args, Path(tmp))

    ceiling = 1 / (1 / a + 1 / b)
    rate_c, rate_d = c["n"] / c["seconds"], d["n"] / d["seconds"]
    small, large = rss
    rows = [
        ("machine", f"{workers} CPU cores"),
        ("images (n)", f"{args.n} JPEGs, 500x375, EfficientNet-Lite0 (ONNX Runtime)"),
        ("(a) model only, ORT batch 32", f"{a:.1f} img/s"),
        ("(b) decode + preprocess only", f"{b:.1f} img/s"),
        ("back-to-back ceiling 1/(1/a+1/b)", f"{ceiling:.1f} img/s"),
        ("(c) predict, local runner", f"{rate_c:.1f} img/s ({c['stored']} rows stored, {c['errors']} errors)"),
        ("(d) predict, dask runner, LocalCluster start included", f"{rate_d:.1f} img/s ({workers} workers x 1 thread; {d['stored']} rows stored)"),
        ("(d) predict, dask runner, on a started LocalCluster", f"{d2['n'] / d2['seconds']:.1f} img/s ({d2['stored']} rows stored)"),
        ("(c) peak RSS, local runner at n", f"{c['peak_rss_mb']:.0f} MB"),
        (f"(e) peak RSS at {args.rss_rows[0]:,} rows", f"{small['peak_rss_mb']:.0f} MB ({small['n'] / small['seconds']:.0f} img/s)"),
        (f"(e) peak RSS at {args.rss_rows[1]:,} rows", f"{large['peak_rss_mb']:.0f} MB ({large['n'] / large['seconds']:.0f} img/s)"),
    ]
    for name, result in frameworks.items():
        label = {"daft": "(f) Daft", "ray": "(f) Ray Data"}[name]
        if "error" in result:
            rows.append((label, f"did not run: {result['error']}"))
        else:
            rows.append((label, f"{result['img_per_s']:.1f} img/s ({result['version']}); c / f = {rate_c / result['img_per_s']:.2f}"))
    rows += [
        ("c / ceiling (target >= 0.9)", f"{rate_c / ceiling:.2f}"),
        ("d / c (cluster start included; on a started cluster)", f"{rate_d / rate_c:.2f}; {d2['n'] / d2['seconds'] / rate_c:.2f}"),
        ("RSS large / RSS small (target <= 1.2)", f"{large['peak_rss_mb'] / small['peak_rss_mb']:.2f}"),
    ]
    print_table("Batch predict benchmark", rows)


if __name__ == "__main__":
    main()
