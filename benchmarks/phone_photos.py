"""Peak memory at default settings: phone photos, and FILE tables of many small rows.

    python benchmarks/phone_photos.py                  # 500 phone photos (4032x3024, 3.3-3.5 MB each)
    python benchmarks/phone_photos.py --n 60           # quicker
    python benchmarks/phone_photos.py --rows 10000,100000   # flat memory: small images, many rows
    python benchmarks/phone_photos.py --rows 10000,100000 --tiny-model   # the same in minutes, not hours

Every step runs as the CLI does, in a fresh process whose environment has no ``SIGHTQL_*`` variable
(the default settings: a 256MB DuckDB memory limit, the default read budget). That process reads its
own peak RSS (VmHWM) when the command is done. Phone-photo steps: ``sightql load`` (what load does on
this branch; also ``--inline`` when load has that flag), SQL ``classify`` over the table of FILE values,
``sightql predict`` into a table, and ``sightql train`` one epoch at 64 px. When load stores BLOBs (before
tables of references), the FILE table is made from a stage holding the same photos. ``--rows``: SQL
``classify`` and ``predict`` over a FILE table of N rows of 500x375 JPEGs (200 distinct files), for each
N; the issue's acceptance is the largest N's peak within 1.2x of the smallest's. With ``--tiny-model``
the rows mode first trains a 32-px model (one epoch on the 200 files, two labels) and runs it instead of
the built-in one: the same decode, read budget, plan pages and writes per row, at a tenth of the model
work, so 100k rows take minutes on a 2-core machine instead of about two hours.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import generated_jpegs, peak_rss_mb, phone_photos, print_table, run_child  # noqa: E402

SCRIPT = Path(__file__).resolve()
CLASSIFY = ("SELECT count(*) AS n, count(*) FILTER (WHERE c.error IS NULL) AS ok "
            "FROM (SELECT classify('{model}', image) AS c FROM {table})")
TINY_MODEL = "tiny32"


def clean_env() -> dict[str, str]:
    """This environment without any ``SIGHTQL_*`` variable: every step runs at the default settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SIGHTQL_")}


# ---- in the child ---------------------------------------------------------------------------
def child_cli(argv: list[str]) -> dict:
    """Run ``sightql argv`` in this process, as ``python -m sightql`` would; then its peak RSS and seconds."""
    from sightql.cli import main

    sys.argv = ["sightql", *argv]
    start = time.perf_counter()
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return {"rc": code, "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def child_setup(home: str, folder: str, table: str) -> dict:
    """Export the model, then make sure ``table`` is a keyed table of FILE values with a ``label`` column:
    the load's table when load stored FILE values, else one made from a stage holding the same photos."""
    import sightql
    from sightql.sql.file_type import is_file_type
    from sightql.sql.tables import table_columns

    with sightql.connect(home) as s:
        s.predictor("imagenet")
        if not table:
            return {}
        with s.warehouse.cursor() as cursor:
            columns = table_columns(cursor, table)
        if is_file_type(columns.get("image", "")):
            if "label" not in columns:
                s.sql(f"ALTER TABLE {table} ADD COLUMN label VARCHAR")
            chosen = table
        else:
            chosen = "photo_files"
            s.create_stage("phones").put(folder)
            s.sql("CREATE TABLE photo_files (relative_path VARCHAR PRIMARY KEY, image file, label VARCHAR)")
            s.sql("INSERT INTO photo_files SELECT relative_path, file, NULL FROM directory('@phones')")
        # two labels by the photo's number (even: chelsea and astronaut; odd: coffee and rocket)
        s.sql(f"UPDATE {chosen} SET label = CASE WHEN regexp_extract(relative_path, '([0-9]+)', 1)::INT % 2 = 0 "
              "THEN 'even' ELSE 'odd' END")
    return {"table": chosen, "load_stores_files": chosen == table}


def child_rows_setup(home: str, counts: list[int], tiny_model: bool) -> dict:
    """A stage of 200 distinct 500x375 JPEGs (folders ``a/`` and ``b/``) and, for each N, a table ``rows_N``
    of N FILE values cycling over them; with ``tiny_model``, also a 32-px model trained on them."""
    import sightql

    with sightql.connect(home) as s:
        s.predictor("imagenet")
        stage = s.create_stage("small")
        for i, data in enumerate(generated_jpegs(200)):
            stage.write_bytes(f"{'ab'[i % 2]}/{i:03d}.jpg", data)
        if tiny_model:
            s.train(TINY_MODEL, "@small", label="folder", epochs=1, image_size=32, progress=False)
        for n in counts:
            s.sql(f"CREATE TABLE rows_{n} (id BIGINT PRIMARY KEY, image file)")
            s.sql(f"INSERT INTO rows_{n} SELECT i, f.file FROM range({n}) r(i) JOIN "
                  "(SELECT row_number() OVER (ORDER BY relative_path) - 1 AS k, file FROM directory('@small')) f "
                  "ON f.k = i % 200")
    return {"model": TINY_MODEL if tiny_model else "imagenet"}


# ---- in the parent --------------------------------------------------------------------------
def step(argv: list[str]) -> dict:
    result = run_child(SCRIPT, "--child", "cli", json.dumps(argv), env=clean_env())
    if result["rc"] != 0:
        result["failed"] = True
    return result


def load_has_inline() -> bool:
    help_text = subprocess.run([sys.executable, "-m", "sightql", "load", "--help"], capture_output=True, text=True,
                               env=clean_env()).stdout
    return "--inline" in help_text


def cell(result: dict, n: int) -> str:
    if result.get("failed"):
        return f"FAILED (exit {result['rc']}) after {result['seconds']:.1f} s, peak {result['peak_rss_mb']:.0f} MB"
    return f"{result['peak_rss_mb']:.0f} MB peak, {result['seconds']:.1f} s ({n / result['seconds']:.1f} img/s)"


def phone_benchmark(n: int, work: Path) -> None:
    folder, home = work / "photos", work / "warehouse"
    start = time.perf_counter()
    if not folder.is_dir() or len(list(folder.iterdir())) != n:  # --keep: made once
        phone_photos(folder, n)
    sizes = [p.stat().st_size for p in folder.iterdir()]
    print(f"{n} phone photos, {min(sizes) / 1e6:.2f}-{max(sizes) / 1e6:.2f} MB each, made in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    w = ["-w", str(home)]
    rows: list[tuple[str, str]] = []
    run_child(SCRIPT, "--child", "setup", str(home), str(folder), "", env=clean_env())  # the model, exported once
    load = step(["load", "photos", str(folder), *w])
    rows.append(("sightql load (default)", cell(load, n)))
    if load_has_inline():
        rows.append(("sightql load --inline", cell(step(["load", "photos_inline", str(folder), "--inline", *w]), n)))
    made = run_child(SCRIPT, "--child", "setup", str(home), str(folder), "photos", env=clean_env())
    table = made["table"]
    rows.append(("table of FILE values", f"{table} ({'made by load' if made['load_stores_files'] else 'from a stage'})"))
    rows.append(("SQL classify over it", cell(step(["sql", CLASSIFY.format(model="imagenet", table=table), *w]), n)))
    rows.append(("sightql predict --into", cell(step(["predict", "-m", "imagenet", "-t", table, "--into", "preds", *w]), n)))
    train = ["train", "--from", table, "--label", "label", "--register", "phones", "--epochs", "1",
             "--image-size", "64", "--batch-size", "16", *w]
    rows.append(("sightql train, 1 epoch, 64 px", cell(step(train), n)))
    print_table(f"Phone photos at default settings (no SIGHTQL_* variables), n = {n}; peak RSS is each "
                "fresh process's VmHWM", rows)


def rows_benchmark(counts: list[int], work: Path, tiny_model: bool) -> None:
    home = work / "warehouse"
    setup = run_child(SCRIPT, "--child", "rows-setup", str(home), json.dumps(counts), json.dumps(tiny_model),
                      env=clean_env())
    model = setup["model"]
    w = ["-w", str(home)]
    rows: list[tuple[str, str]] = []
    peaks: dict[str, list[float]] = {"classify": [], "predict": []}
    for n in counts:
        classify = step(["sql", CLASSIFY.format(model=model, table=f"rows_{n}"), *w])
        predict = step(["predict", "-m", model, "-t", f"rows_{n}", "--into", f"preds_{n}", *w])
        rows.append((f"SQL classify, {n:,} rows", cell(classify, n)))
        rows.append((f"sightql predict, {n:,} rows", cell(predict, n)))
        peaks["classify"].append(classify["peak_rss_mb"])
        peaks["predict"].append(predict["peak_rss_mb"])
    for name, values in peaks.items():
        rows.append((f"{name}: peak at {counts[-1]:,} / at {counts[0]:,} (target <= 1.2)", f"{values[-1] / values[0]:.2f}"))
    print_table(f"FILE tables of 500x375 JPEGs at default settings, model {model}: peak RSS by row count", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="phone photos (default 500)")
    parser.add_argument("--rows", help="comma-separated row counts for the flat-memory mode, e.g. 10000,100000")
    parser.add_argument("--tiny-model", action="store_true",
                        help="--rows: train and run a 32-px model instead of the built-in one (minutes, not hours)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "cli":
            out = child_cli(json.loads(rest[0]))
        elif kind == "setup":
            out = child_setup(*rest)
        else:
            out = child_rows_setup(rest[0], json.loads(rest[1]), json.loads(rest[2]))
        print(json.dumps(out))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.rows:
            rows_benchmark([int(n) for n in args.rows.split(",")], work, args.tiny_model)
        else:
            phone_benchmark(args.n, work)


if __name__ == "__main__":
    main()
