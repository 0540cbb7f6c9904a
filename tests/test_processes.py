"""Process facts (sightql.processes, psutil): running or not, and the command line, of real child processes."""

from __future__ import annotations

import os
import subprocess
import sys

from sightql.processes import command_line, process_alive


def test_a_running_process_is_alive_and_shows_its_command_line():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "job-1234"])
    try:
        assert process_alive(child.pid)
        words = command_line(child.pid)
        assert words is not None and words[-1] == "job-1234" and "-c" in words
    finally:
        child.kill()
        child.wait()
    assert not process_alive(child.pid) and command_line(child.pid) is None


def test_an_ended_child_not_yet_reaped_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # it has ended; WNOWAIT leaves it unreaped
        assert not process_alive(child.pid)
    finally:
        child.wait()


def test_impossible_pids_are_not_alive():
    assert not process_alive(2**62) and not process_alive(-5)
    assert command_line(2**62) is None
