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
"""

from __future__ import annotations

import argparse
import json
import os
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
    parser.add_argument("--interleaved-child", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, metavar=("HOME", "MODEL", "RUNNER", "TABLE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
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
