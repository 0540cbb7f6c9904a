"""Two processes on one warehouse: the second waits, then names the holder in one sentence."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import sightql
from sightql.errors import WarehouseError

HOLD = """
import sys, time, sightql
s = sightql.connect(sys.argv[1])
s.sql("CREATE TABLE IF NOT EXISTS notes (n INTEGER)")
s.sql("INSERT INTO notes VALUES (1)")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
s.close()
"""


def _start_holder(home, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(home), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_held_warehouse_gives_one_sentence_naming_the_process(tmp_path):
    holder = _start_holder(tmp_path / "wh", 30)
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseError) as info:
            sightql.connect(tmp_path / "wh", lock_wait=0.3)
        assert time.monotonic() - started >= 0.3
        message = str(info.value)
        assert f"in use by process {holder.pid}" in message
        assert "python -c" in message and "SIGHTQL_LOCK_WAIT" in message
        assert "\n" not in message
    finally:
        holder.kill()
        holder.wait()


def test_an_open_waits_for_a_short_holder_and_sees_its_data(tmp_path):
    holder = _start_holder(tmp_path / "wh", 1.0)
    try:
        with sightql.connect(tmp_path / "wh", lock_wait=30) as session:
            assert session.sql("SELECT count(*) AS n FROM notes").to_pylist() == [{"n": 1}]
    finally:
        holder.wait()
    assert holder.returncode == 0


def test_lock_wait_from_the_environment_is_checked(monkeypatch, tmp_path):
    monkeypatch.setenv("SIGHTQL_LOCK_WAIT", "soon")
    with pytest.raises(sightql.errors.ConfigError, match="SIGHTQL_LOCK_WAIT='soon' is not a number of seconds"):
        sightql.connect(tmp_path / "wh")
