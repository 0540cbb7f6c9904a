"""Training in a background process (``python -m sightql train ...``), watched through files.

The web app starts training with :func:`start_job` and returns at once. The process gets its
settings as a JSON file of :class:`~sightql.train.options.TrainOptions` (``--options-json``),
never as rebuilt flags. It holds the warehouse's DuckDB file only for short steps (see
:mod:`sightql.train.run`), so ``training_runs`` and ``training_log`` stay readable while it trains;
it also keeps ``<warehouse>/training/jobs/<job_id>.progress.json`` current
(:mod:`sightql.train.progress_file`), and :func:`job_status` reads that file, the job's own
record (``<job_id>.job.json``: request, PID, command) and its output (``<job_id>.log``) without
touching the warehouse, so a page polling a job's steps within an epoch never waits for the file.

The process starts in its own session (it outlives the app if the app stops) with
``SIGHTQL_LOCK_WAIT`` raised, so it waits for a page that has the warehouse open for a moment
instead of failing (its short steps wait at least ``sightql.sql.warehouse.JOB_LOCK_WAIT`` anyway).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sightql.errors import ConfigError, SightQLError
from sightql.processes import command_line, process_alive
from sightql.registry.refs import check_model_name
from sightql.train.options import TrainOptions
from sightql.train.progress_file import FINAL_STATES

JOBS_DIR = Path("training") / "jobs"
DEFAULT_LOCK_WAIT = 120.0  # seconds the training process waits for the warehouse at start
_LAUNCHED: dict[int, subprocess.Popen[bytes]] = {}  # our children, so their exit is seen (and reaped)


def check_request(options: TrainOptions) -> None:
    """What a run would refuse at once, refused with one sentence before any process starts."""
    if not options.source.strip():
        raise ConfigError("say what to train on: a table name, or '@stage/prefix' with label 'folder'")
    if options.source.startswith("@") and options.label != "folder":
        raise ConfigError(f"a stage source takes its labels from folders; set label to 'folder', not {options.label!r}")
    check_model_name(options.name)


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    pid: int
    started_at: str
    request: dict[str, Any]
    state: str  # starting, running, completed, failed, interrupted
    phase: str | None = None  # loading images, training, evaluating, registering
    run_id: str | None = None
    epoch: int | None = None
    epochs: int | None = None
    step: int = 0
    steps: int | None = None
    train_loss: float | None = None
    train_acc: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per finished epoch, as in training_log
    registered_version: str | None = None
    error: str | None = None
    updated_at: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def fraction_done(self) -> float:
        """Share of all training steps done, 0..1 (evaluation and registration come after 1)."""
        if self.finished:
            return 1.0
        if not self.epoch or not self.epochs or not self.steps:
            return 0.0
        return min(1.0, ((self.epoch - 1) + self.step / self.steps) / self.epochs)


def jobs_dir(home: str | Path) -> Path:
    return Path(home).expanduser() / JOBS_DIR


def _paths(home: str | Path, job_id: str) -> tuple[Path, Path, Path]:
    folder = jobs_dir(home)
    return folder / f"{job_id}.job.json", folder / f"{job_id}.progress.json", folder / f"{job_id}.log"


def options_path(home: str | Path, job_id: str) -> Path:
    """The job's settings as :meth:`TrainOptions.to_json` wrote them; the process reads them with ``--options-json``."""
    return jobs_dir(home) / f"{job_id}.options.json"


def start_job(home: str | Path, options: TrainOptions, *, lock_wait: float = DEFAULT_LOCK_WAIT) -> JobStatus:
    """Start ``python -m sightql train --options-json FILE`` on the warehouse at ``home``; returns at once.

    The process reads ``options`` back from that JSON file (:func:`options_path`), every setting as it is."""
    check_request(options)
    home = Path(home).expanduser().resolve()
    job_id = f"job-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    record, progress, log = _paths(home, job_id)
    record.parent.mkdir(parents=True, exist_ok=True)
    settings = options_path(home, job_id)
    settings.write_text(options.to_json())
    command = [sys.executable, "-m", "sightql", "train", "--options-json", str(settings), "--warehouse", str(home),
               "--progress-file", str(progress)]
    env = {**os.environ, "SIGHTQL_LOCK_WAIT": f"{lock_wait:g}", "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
    _LAUNCHED[process.pid] = process
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record.write_text(json.dumps({"job_id": job_id, "pid": process.pid, "started_at": started,
                                  "request": options.to_json_dict(), "command": command}))
    return job_status(home, job_id)


def job_status(home: str | Path, job_id: str) -> JobStatus:
    """A job's state from its files; a process that ended without a final report counts as failed."""
    record_path, progress_path, log_path = _paths(home, job_id)
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        raise SightQLError(f"no training job {job_id!r} in {jobs_dir(home)}") from None
    progress = _read_json(progress_path)
    own = ("job_id", "pid", "started_at", "request")
    fields = {k: v for k, v in progress.items() if k in JobStatus.__dataclass_fields__ and k not in own}
    fields.setdefault("state", "starting")
    status = JobStatus(job_id=job_id, pid=record["pid"], started_at=record["started_at"], request=record["request"],
                       **fields)
    if not status.finished and not _alive(status.pid):
        return JobStatus(**{**asdict(status), "state": "failed", "phase": None, "error": _exit_reason(log_path, status.pid)})
    return status


def list_jobs(home: str | Path) -> list[JobStatus]:
    """Every job started in this warehouse, newest first."""
    folder = jobs_dir(home)
    if not folder.is_dir():
        return []
    ids = sorted((p.name[: -len(".job.json")] for p in folder.glob("*.job.json")), reverse=True)
    return [job_status(home, job_id) for job_id in ids]


def active_jobs(home: str | Path) -> list[JobStatus]:
    return [job for job in list_jobs(home) if not job.finished]


def stop_job(home: str | Path, job_id: str) -> None:
    """Ask a running job to stop as Ctrl-C would: it saves a checkpoint and marks the run interrupted."""
    status = job_status(home, job_id)
    if status.finished:
        raise ConfigError(f"training job {job_id} has already ended ({status.state})")
    if not _runs_job(status.pid, job_id):
        raise SightQLError(f"process {status.pid} is not training job {job_id} any more; nothing was stopped")
    os.kill(status.pid, signal.SIGINT)


def log_tail(home: str | Path, job_id: str, lines: int = 20) -> str:
    """The last lines the training process printed."""
    return "\n".join(_read_text(_paths(home, job_id)[2]).splitlines()[-lines:])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _alive(pid: int) -> bool:
    process = _LAUNCHED.get(pid)
    if process is not None:
        return process.poll() is None
    return process_alive(pid)


def _runs_job(pid: int, job_id: str) -> bool:
    """Whether ``pid`` is still this job's process (a PID can be reused); assumed where its command line
    cannot be read."""
    if not _alive(pid):
        return False
    words = command_line(pid)
    return words is None or any(job_id in word for word in words)


def _exit_reason(log_path: Path, pid: int) -> str:
    """The CLI's ``error: ...`` sentence when it printed one, else the end of what the process printed."""
    text = _read_text(log_path)
    errors = [line[len("error: "):] for line in text.splitlines() if line.startswith("error: ")]
    if errors:
        return errors[-1]
    tail = " ".join(text.strip().splitlines()[-3:])[-300:]
    return f"the training process {pid} ended without a report" + (f"; its last output: {tail}" if tail else "")
