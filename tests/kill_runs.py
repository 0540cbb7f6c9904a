"""Kill -9 a CLI job at random points, for the crash tests of load, externalize and predict."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

CLI = [sys.executable, "-m", "sightql"]


def timed_run(args: list[str]) -> float:
    """Run ``sightql args`` to the end (it must succeed); its wall time in seconds."""
    started = time.monotonic()
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started


def kill_at_random_points(args: list[str], span_s: float, times: int, seed: int) -> list[float]:
    """Start ``sightql args`` ``times`` times and SIGKILL each after a random delay within ``span_s``
    (a full run's time); the delays used. A run that ends before its delay is simply not killed."""
    rng = random.Random(seed)
    delays = []
    for _ in range(times):
        delay = rng.uniform(0.2, span_s)
        child = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env={**os.environ, "SIGHTQL_LOCK_WAIT": "60"})
        try:
            child.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
        delays.append(delay)
    return delays


def kill_when_paused(code: str, args: list[str], marker: str = "sightql-test: paused", wait_s: float = 120) -> None:
    """Run ``python -c code args`` until it prints ``marker`` on stderr (a crash test's child pausing at a
    chosen point, e.g. inside a write's open transaction), then SIGKILL it there."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + wait_s
    assert child.stderr is not None
    for line in child.stderr:
        if marker in line:
            break
        assert time.monotonic() < deadline, "the child never reached its pause point"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
