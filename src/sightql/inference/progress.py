"""A rich progress bar with img/s and ETA on stderr; a no-op when disabled."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(total: int, description: str, enabled: bool | None) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(rows)``. ``enabled=None`` shows the bar only on a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda rows: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[rate]} img/s"),
        TextColumn("ETA"), TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total, rate="-")

        started = time.perf_counter()
        done = [0]

        def advance(rows: int) -> None:
            done[0] += rows
            elapsed = time.perf_counter() - started
            bar.update(task, advance=rows, rate=f"{done[0] / elapsed:.1f}" if elapsed > 0 else "-")

        yield advance
