"""Shared benchmark helpers: generated JPEGs, peak RSS of a child process, table printing."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def generated_jpegs(n: int, size: tuple[int, int] = (500, 375), seed: int = 0) -> list[bytes]:
    """``n`` distinct JPEGs: random crops of real photos, resized, with a little noise (the int8 gate's generator)."""
    from sightql.models.sample_photos import generated_crops

    return generated_crops(n, seed, size)


def add_file_table(session, table: str = "bench", files_table: str = "bench_files") -> None:
    """The FILE twin of a BLOB table: each image written to the local stage ``@<files_table>`` under its
    relative path, and a table of FILE values naming them (``to_file``), keyed the same way."""
    stage = session.create_stage(files_table, exist_ok=True)
    reader = session.con.sql(f"SELECT relative_path, image FROM {table}").to_arrow_reader(512)
    for batch in reader:
        for path, data in zip(batch.column("relative_path").to_pylist(), batch.column("image").to_pylist()):
            stage.write_bytes(path, data)
    session.sql(f"CREATE OR REPLACE TABLE {files_table} (relative_path VARCHAR PRIMARY KEY, image file)")
    session.sql(f"INSERT INTO {files_table} SELECT relative_path, to_file('@{files_table}', relative_path) FROM {table}")
    session.sql("CHECKPOINT")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: on Linux that keeps the forking parent's peak across exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status; peak RSS is measured on Linux only")


def run_child(script: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run ``script --child ...`` in a fresh process (``env``: its whole environment); it prints one JSON line last."""
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for key, value in rows:
        print(f"| {key.ljust(width)} | {value} |")


def phone_photos(folder: Path, n: int) -> list[Path]:
    """``n`` phone photos (4032x3024 JPEGs, EXIF orientation 6, 3.3-3.5 MB each) in ``folder``: the tests'
    own generator (tests/media.py), so the benchmark and the memory test measure the same photos."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests.media import write_phone_photos

    return write_phone_photos(folder, n)
