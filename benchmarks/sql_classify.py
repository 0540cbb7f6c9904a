"""Benchmark the SQL classify path against its ceilings and against a tutorial-style UDF.

    python benchmarks/sql_classify.py            # 2,000 generated 500x375 JPEGs
    python benchmarks/sql_classify.py --n 500    # quicker
    python benchmarks/sql_classify.py --file-mode --n 500 --repeats 3   # BLOB table against FILE table

Prints, from one run on one machine:
  (a) model-only ONNX Runtime throughput on preprocessed tensors, batch 32
  (b) decode + preprocess only (the engine's worker pool, as the SQL path uses)
  (c) SELECT classify(...) over the table
  (d) a tutorial-style per-row scalar UDF: hex string in, torch, batch of 1
  (e) peak RSS of (c), each in a fresh process, at n and at 10 x n rows
and the ratios c / (1/(1/a + 1/b)) and c / d.

``--file-mode`` instead times (c) over the same JPEGs stored twice: as a BLOB table, and as files in a
local stage with a table of FILE values naming them (``to_file``); each repeat runs both, one after
the other, each in a fresh process; the FILE / BLOB ratio of the medians is the acceptance figure
(target >= 0.95).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_file_table, generated_jpegs, median, peak_rss_mb, print_table, run_child  # noqa: E402

import sightql  # noqa: E402
from sightql.images.preprocess import preprocess  # noqa: E402
from sightql.engine import worker_pool  # noqa: E402

QUERY = "SELECT relative_path, classify('imagenet', image) AS c FROM {table}"


def build_warehouse(home: Path, images: list[bytes], copies: int) -> None:
    import pyarrow as pa

    with sightql.connect(home) as s:
        s.predictor("imagenet")  # export the model once, outside every timing
        s.sql("CREATE OR REPLACE TABLE bench (relative_path VARCHAR PRIMARY KEY, image BLOB)")
        for copy in range(copies):
            batch = pa.table({"relative_path": [f"{copy}/{i}.jpg" for i in range(len(images))], "image": images})
            s.con.register("_b", batch)
            s.sql("INSERT INTO bench SELECT * FROM _b")
            s.con.unregister("_b")
        s.sql("CHECKPOINT")


def time_sql(home: Path, table_name: str = "bench") -> dict:
    with sightql.connect(home) as s:
        s.predictor("imagenet")
        n = s.sql(f"SELECT count(*) AS n FROM {table_name}").to_pylist()[0]["n"]
        start, cpu_start = time.perf_counter(), time.process_time()
        table = s.sql(QUERY.format(table=table_name))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        errors = sum(1 for c in table.column("c").to_pylist() if c["error"])
    return {"n": n, "seconds": seconds, "cpu_seconds": cpu, "errors": errors, "peak_rss_mb": peak_rss_mb()}


def model_only(session, images: list[bytes], n: int, batch: int = 32) -> float:
    predictor = session.predictor("imagenet")
    tensors = np.stack([preprocess(b, predictor.card.input) for b in images[:batch]])
    predictor.predict(tensors)  # warm-up
    rounds = max(1, n // batch)
    start = time.perf_counter()
    for _ in range(rounds):
        predictor.predict(tensors)
    return rounds * batch / (time.perf_counter() - start)


def decode_only(session, images: list[bytes]) -> float:
    spec = session.predictor("imagenet").card.input
    pool = worker_pool(session.settings.decode_threads)
    start = time.perf_counter()
    for _ in pool.map(lambda b: preprocess(b, spec), images):
        pass
    return len(images) / (time.perf_counter() - start)


def tutorial_udf(images: list[bytes], n: int) -> float:
    """The tutorials' pattern: VARCHAR hex column, per-row Python UDF, torch eager, batch of 1."""
    import io

    import duckdb
    import torch
    from duckdb import sqltypes as T
    from PIL import Image

    from sightql.models.builtin import imagenet_card, imagenet_torch_module

    model, card = imagenet_torch_module(), imagenet_card()
    mean = torch.tensor(card.input.mean).view(3, 1, 1)
    std = torch.tensor(card.input.std).view(3, 1, 1)

    def recognize(hex_image: str) -> str:
        image = Image.open(io.BytesIO(bytes.fromhex(hex_image))).convert("RGB").resize((224, 224))
        tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
        with torch.no_grad():
            logits = model(((tensor - mean) / std).unsqueeze(0))
        return card.labels[int(logits.argmax())]

    con = duckdb.connect()
    con.create_function("recognize", recognize, [T.VARCHAR], T.VARCHAR)
    con.execute("CREATE TABLE t (image_hex VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?)", [[b.hex()] for b in images[:n]])
    start = time.perf_counter()
    con.execute("SELECT recognize(image_hex) FROM t").fetchall()
    rate = n / (time.perf_counter() - start)
    con.close()
    return rate


def file_mode(args: argparse.Namespace) -> None:
    """(c) over a BLOB table and over the FILE table of the same JPEGs, alternating, fresh processes."""
    print(f"generating {args.n} JPEGs at 500x375 ...", flush=True)
    images = generated_jpegs(args.n)
    runs: dict[str, list[dict]] = {"bench": [], "bench_files": []}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "n"
        build_warehouse(home, images, copies=1)
        with sightql.connect(home) as s:
            add_file_table(s)
        for repeat in range(args.repeats):
            for table, done in runs.items():
                print(f"repeat {repeat + 1}: {table} ...", flush=True)
                done.append(run_child(Path(__file__), "--child", str(home), "--table", table))
    rates = {t: [r["n"] / r["seconds"] for r in done] for t, done in runs.items()}
    blob, file = median(rates["bench"]), median(rates["bench_files"])
    cpu_ms = {t: median([1000 * r["cpu_seconds"] / r["n"] for r in done]) for t, done in runs.items()}
    rows = [
        ("machine", f"{os.cpu_count()} CPU cores"),
        ("images (n)", f"{args.n} JPEGs, 500x375; {args.repeats} repeats, each table in a fresh process"),
        ("(c) SELECT classify(...), BLOB table", f"{blob:.1f} img/s median ({', '.join(f'{r:.1f}' for r in rates['bench'])})"),
        ("(c) SELECT classify(...), FILE table (local stage)",
         f"{file:.1f} img/s median ({', '.join(f'{r:.1f}' for r in rates['bench_files'])})"),
        ("errors BLOB / FILE", f"{runs['bench'][0]['errors']} / {runs['bench_files'][0]['errors']}"),
        ("peak RSS BLOB / FILE", f"{runs['bench'][0]['peak_rss_mb']:.0f} MB / {runs['bench_files'][0]['peak_rss_mb']:.0f} MB"),
        ("CPU per image (process CPU time / n) BLOB / FILE", f"{cpu_ms['bench']:.2f} / {cpu_ms['bench_files']:.2f} ms"),
        ("FILE / BLOB img/s, medians; best runs (target >= 0.95)",
         f"{file / blob:.2f}; {max(rates['bench_files']) / max(rates['bench']):.2f}"),
        ("BLOB / FILE CPU per image (the same, less sensitive to other load)", f"{cpu_ms['bench'] / cpu_ms['bench_files']:.2f}"),
    ]
    print_table("SQL classify benchmark: FILE table against BLOB table", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="images in the table (default 2000)")
    parser.add_argument("--tutorial-n", type=int, default=200, help="rows for the slow tutorial UDF (d)")
    parser.add_argument("--file-mode", action="store_true", help="only (c), over a BLOB and a FILE table of the same JPEGs")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each table in --file-mode (default 3)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--table", default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(time_sql(Path(args.child), args.table)))
        return
    if args.file_mode:
        file_mode(args)
        return

    print(f"generating {args.n} JPEGs at 500x375 ...", flush=True)
    images = generated_jpegs(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp) / "n", Path(tmp) / "10n"
        build_warehouse(small, images, copies=1)
        with sightql.connect(small) as s:
            a = model_only(s, images, args.n)
            b = decode_only(s, images)
        c_run = run_child(Path(__file__), "--child", str(small))
        c = c_run["n"] / c_run["seconds"]
        d = tutorial_udf(images, min(args.tutorial_n, args.n))
        build_warehouse(large, images, copies=10)
        big = run_child(Path(__file__), "--child", str(large))
    ceiling = 1 / (1 / a + 1 / b)
    rows = [
        ("machine", f"{os.cpu_count()} CPU cores"),
        ("images (n)", f"{args.n} JPEGs, 500x375"),
        ("(a) model only, ORT batch 32", f"{a:.1f} img/s"),
        ("(b) decode + preprocess only", f"{b:.1f} img/s"),
        ("back-to-back ceiling 1/(1/a+1/b)", f"{ceiling:.1f} img/s"),
        ("(c) SELECT classify(...) at n", f"{c:.1f} img/s ({c_run['errors']} errors)"),
        ("(c) SELECT classify(...) at 10 x n", f"{big['n'] / big['seconds']:.1f} img/s"),
        ("(d) tutorial per-row UDF (hex, torch, batch 1)", f"{d:.1f} img/s on {min(args.tutorial_n, args.n)} rows"),
        ("(e) peak RSS of (c) at n", f"{c_run['peak_rss_mb']:.0f} MB"),
        ("(e) peak RSS of (c) at 10 x n", f"{big['peak_rss_mb']:.0f} MB"),
        ("c / ceiling (target >= 0.9)", f"{c / ceiling:.2f}"),
        ("c / d (target >= 5)", f"{c / d:.1f}"),
        ("RSS 10n / RSS n (target <= 1.2)", f"{big['peak_rss_mb'] / c_run['peak_rss_mb']:.2f}"),
    ]
    print_table("SQL classify benchmark", rows)


if __name__ == "__main__":
    main()
