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


def test_sessions_on_one_warehouse_in_one_process_take_turns(tmp_path):
    """Threads (a Streamlit app's tabs, an API's requests) wait for each other's session."""
    import threading

    home = tmp_path / "wh"
    with sightql.connect(home) as session:
        session.sql("CREATE TABLE hits (n INTEGER)")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(5):
                with sightql.connect(home, lock_wait=60) as s:
                    s.sql("INSERT INTO hits VALUES (?)", [n])
        except BaseException as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with sightql.connect(home) as session:
        assert session.sql("SELECT count(*) AS n FROM hits").to_pylist() == [{"n": 30}]


def test_a_second_session_in_the_same_thread_is_told_at_once(tmp_path):
    with sightql.connect(tmp_path / "wh"):
        started = time.monotonic()
        with pytest.raises(WarehouseError, match="this thread already has the warehouse .* open in another session"):
            sightql.connect(tmp_path / "wh", lock_wait=30)
        assert time.monotonic() - started < 5  # not a wait for itself
    sightql.connect(tmp_path / "wh").close()  # its turn was given back


def test_a_session_dropped_without_close_gives_its_turn_back(tmp_path):
    import gc

    session = sightql.connect(tmp_path / "wh")
    session.con.close()  # what garbage collection of the connection would do
    del session
    gc.collect()
    sightql.connect(tmp_path / "wh", lock_wait=1).close()


READ_COUNT = "import sys, sightql; s = sightql.connect(sys.argv[1], lock_wait=2); print(s.sql('SELECT count(*) FROM notes').column(0)[0]); s.close()"


def test_a_released_warehouse_lets_another_process_in_between_short_transactions(tmp_path):
    session = sightql.connect(tmp_path / "wh")
    session.sql("CREATE TABLE notes (n INTEGER)")
    with session.warehouse.released():
        with session.warehouse.transaction() as cursor:
            cursor.execute("INSERT INTO notes VALUES (1), (2)")
        other = subprocess.run([sys.executable, "-c", READ_COUNT, str(tmp_path / "wh")], capture_output=True, text=True)
        assert other.returncode == 0, other.stderr
        assert other.stdout.strip() == "2"  # it opened the file while this session was released
        assert session.warehouse.rows("SELECT count(*) FROM notes") == [(2,)]
        with pytest.raises(WarehouseError, match="released"):
            session.warehouse.connection()
    # afterwards the session's own connection opens again, SQL functions registered again
    assert session.sql("SELECT image_info(NULL::BLOB).error AS e").column("e")[0].as_py()
    session.close()
