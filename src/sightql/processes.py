"""Facts about other processes of this machine (running or not, command line), from psutil on every OS.

psutil is imported when a fact is asked for (a busy warehouse, a partial file, a job's status), not by
``import sightql``.
"""

from __future__ import annotations


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` is running on this machine (a zombie, ended but not reaped, is not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    except (OverflowError, ValueError):  # not a PID this machine can have
        return False


def command_line(pid: int) -> list[str] | None:
    """The words process ``pid`` was started with, or None where it is gone or not ours to read."""
    import psutil

    try:
        return psutil.Process(pid).cmdline()
    except (psutil.Error, OverflowError, ValueError):
        return None
