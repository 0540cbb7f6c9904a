"""Benchmark batch predict (session.predict) against its ceilings, in memory, and against Daft and Ray Data.

    python benchmarks/batch_predict.py                          # 1,000 JPEGs for img/s; RSS at 5k and 50k rows
    python benchmarks/batch_predict.py --n 300 --rss-rows 2000 20000
    python benchmarks/batch_predict.py --compare-python /tmp/bench-venv/bin/python   # adds Daft and Ray Data

Prints, from one run on one machine:
  (a) model-only ONNX Runtime throughput on preprocessed tensors, batch 32
  (b) decode + preprocess only (the same thread pool predict uses)
  (c) session.predict, local runner, over an n-row table (fresh process)
  (d) session.predict, Dask runner (local cluster, one single-thread worker process per core; fresh process),
      once with the cluster's start inside the timing and once on a cluster started beforehand
  (e) peak RSS of the local runner at 5k and 50k rows (fresh processes); see --rss-* below
  (f) the same images and model through Daft and Ray Data (run by --compare-python, where they are installed)
and the ratios c / (1/(1/a + 1/b)), d / c, RSS 50k / RSS 5k, c / f.

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
from _common import generated_jpegs, peak_rss_mb, print_table, run_child  # noqa: E402
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


def child(home: Path, model: str, runner: str) -> dict:
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
        start = time.perf_counter()
        report = s.predict(model, "bench", into="preds", runner=chosen, progress=False)
        seconds = time.perf_counter() - start
        if cluster is not None:
            cluster.close()
        stored = s.sql("SELECT count(*) AS n FROM preds WHERE model_version IS NOT NULL").to_pylist()[0]["n"]
    return {"n": report.predicted, "stored": stored, "errors": report.errors, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


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
        results.append(run_child(HERE, "--child", str(home), model, "local"))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="rows for the img/s runs (default 1000)")
    parser.add_argument("--rss-rows", type=int, nargs=2, default=[5000, 50000], help="the two table sizes for RSS")
    parser.add_argument("--rss-distinct", type=int, default=200, help="distinct JPEGs repeated in the RSS tables")
    parser.add_argument("--rss-size", type=int, nargs=2, default=[500, 375], help="JPEG size in the RSS tables")
    parser.add_argument("--rss-only", action="store_true", help="only the memory runs (e)")
    parser.add_argument("--compare-python", help="a Python with daft and ray[data] installed, for (f)")
    parser.add_argument("--child", nargs=3, metavar=("HOME", "MODEL", "RUNNER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1], args.child[2])))
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
        c = run_child(HERE, "--child", str(main_home), "imagenet", "local")
        with sightql.connect(main_home) as s:
            s.sql("DROP TABLE preds")
        print("dask runner ...", flush=True)
        d = run_child(HERE, "--child", str(main_home), "imagenet", "dask")
        with sightql.connect(main_home) as s:
            s.sql("DROP TABLE preds")
        print("dask runner on a started cluster ...", flush=True)
        d2 = run_child(HERE, "--child", str(main_home), "imagenet", "dask-started")
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
