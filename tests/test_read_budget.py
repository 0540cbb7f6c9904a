"""The process's read budget: FILE bytes read and not yet decoded, across every reader at once.

A unit check of :class:`sightql.engine.ReadBudget` with real threads, then SQL ``classify`` and
``predict`` over a real FILE table with a budget of two files: at most two files' bytes are alive
at once, though four decode threads (and DuckDB's own threads) would read more without it.
"""

from __future__ import annotations

import threading
import time

import sightql
from sightql.config import Settings
from sightql.engine import ReadBudget
from sightql.stages.stage import Stage
from tests.test_file_values import _Held


def test_a_budget_keeps_what_is_held_under_its_limit_and_lets_a_large_read_go_alone():
    budget = ReadBudget(100)
    inside = []
    lock = threading.Lock()

    def hold(size: int) -> None:
        with budget.hold(size):
            with lock:
                inside.append(budget.held)
            time.sleep(0.01)

    threads = [threading.Thread(target=hold, args=(size,)) for size in [40] * 12 + [250, 40, 40]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(inside) == 15 and budget.held == 0
    assert budget.peak == 250 and max(h for h in inside if h != 250) <= 100  # the 250 alone, the rest within 100


def _file_table(session, photos_dir, rows: int) -> int:
    session.create_stage("photos").put(photos_dir / "coffee.jpg")
    session.sql("CREATE TABLE many (id INTEGER PRIMARY KEY, image file)")
    session.sql(f"INSERT INTO many SELECT i, to_file('@photos', 'coffee.jpg') FROM range({rows}) r(i)")
    return (photos_dir / "coffee.jpg").stat().st_size


def test_sql_and_predict_over_file_values_hold_at_most_the_budget(warehouse, photos_dir, monkeypatch):
    with sightql.connect(warehouse) as s:
        size = _file_table(s, photos_dir, 96)
    original = Stage.read_checked  # the one read of a FILE's bytes (checked against the value)
    monkeypatch.setattr(Stage, "read_checked", lambda self, path, check: _Held(original(self, path, check)))
    settings = Settings(batch_size=8, decode_threads=4, read_budget_bytes=2 * size)
    with sightql.connect(warehouse, settings=settings) as s:
        _Held.alive = _Held.peak = _Held.reads = 0
        rows = s.sql("SELECT classify('imagenet', image) AS c FROM many").to_pylist()
        assert len(rows) == 96 and all(r["c"]["error"] is None for r in rows)
        assert _Held.reads == 96 and 1 <= _Held.peak <= 2

        _Held.alive = _Held.peak = _Held.reads = 0
        report = s.predict("imagenet", "many", progress=False)
        assert (report.predicted, report.errors) == (96, 0)
        assert _Held.reads == 96 and 1 <= _Held.peak <= 2
