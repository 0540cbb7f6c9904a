"""A training run's progress as one small JSON file, for readers that cannot open the warehouse meanwhile.

A training process holds the warehouse's DuckDB file for its whole run, so no other process
can read ``training_log`` until it ends. With ``progress_file=`` (CLI ``--progress-file``) the
run also keeps this file current: state, phase, epoch and step, the running loss and
accuracy, one row per finished epoch (the same row ``training_log`` gets), and at the end the
registered version or the error. Each write replaces the file atomically, so a reader never
sees half of one.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sightql.partial_files import partial_path

FINAL_STATES = ("completed", "failed", "interrupted")


class ProgressFile:
    """Writes progress to ``path``; every method is a no-op when ``path`` is None."""

    def __init__(self, path: str | Path | None, min_interval: float = 0.5):
        self.path = Path(path) if path is not None else None
        self.min_interval = min_interval
        self._last_write = 0.0
        self.data: dict[str, Any] = {
            "pid": os.getpid(), "state": "running", "phase": "starting", "run_id": None, "name": None,
            "epoch": None, "epochs": None, "step": 0, "steps": None, "train_loss": None, "train_acc": None,
            "history": [], "registered_version": None, "error": None,
        }
        self._write()

    def _write(self, force: bool = True) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if not force and now - self._last_write < self.min_interval:
            return
        self._last_write = now
        self.data["updated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(self.path)
        try:
            partial.write_text(json.dumps(self.data, default=str))
            os.replace(partial, self.path)
        finally:
            partial.unlink(missing_ok=True)

    def begin(self, run_id: str, name: str, epochs: int) -> None:
        self.data.update(run_id=run_id, name=name, epochs=epochs, phase="loading images")
        self._write()

    def phase(self, phase: str) -> None:
        self.data["phase"] = phase
        self._write()

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None:
        self.data.update(phase="training", epoch=epoch, epochs=epochs, step=0, steps=steps,
                         train_loss=None, train_acc=None)
        self._write()

    def step(self, loss: float, acc: float) -> None:
        self.data.update(step=self.data["step"] + 1, train_loss=loss, train_acc=acc)
        self._write(force=self.data["step"] == self.data["steps"])

    def epoch_finished(self, row: dict[str, Any]) -> None:
        self.data["history"] = [h for h in self.data["history"] if h["epoch"] != row["epoch"]] + [row]
        self._write()

    def finish(self, state: str, *, registered_version: str | None = None, error: str | None = None) -> None:
        assert state in FINAL_STATES
        self.data.update(state=state, phase=None, registered_version=registered_version, error=error)
        self._write()
