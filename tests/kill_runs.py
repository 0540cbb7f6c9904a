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
