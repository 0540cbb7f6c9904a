"""The local Dask cluster of ``runner='dask'``: a scheduler in this process, each worker a fresh
Python process.

Dask's ``LocalCluster`` starts its workers with multiprocessing, which re-runs the user's
``__main__`` script in every worker unless the script guards its work with
``if __name__ == "__main__":``; an unguarded script then reopened the warehouse in each
worker and every worker died (``Nanny failed to start``). Here each worker is started as
``python -m distributed.cli.dask_spec`` (a Nanny and its worker), so no worker imports the
caller's script: the tasks only need sightql. Imported only when a local cluster is started.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from distributed import Scheduler, SpecCluster
from distributed.core import rpc
from distributed.deploy.spec import ProcessInterface

from sightql.config import read_settings
from sightql.errors import DistributedError

# Seconds a worker waits for the scheduler, and a closing worker is given before it is killed.
CONNECT_SECONDS = 60
CLOSE_SECONDS = 10
# Dask's INFO lines (a Nanny starting and closing) would fill a script's output; a user's own
# DASK_LOGGING__DISTRIBUTED wins.
QUIET = {"DASK_LOGGING__DISTRIBUTED": "error"}


def worker_env(workers: int) -> dict[str, str]:
    """Environment of a local cluster's worker processes: this checkout's sightql, and each worker's
    share of the cores for ONNX Runtime and decoding (else every worker would run as many threads
    as the machine has cores). ort_threads / decode_threads set here (config file or SIGHTQL_*) win."""
    package_root = str(Path(__file__).resolve().parents[3])
    pythonpath = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    share = max(1, (os.cpu_count() or 1) // workers)
    settings, chosen = read_settings()
    return {
        "PYTHONPATH": pythonpath,
        "SIGHTQL_ORT_THREADS": str(settings.ort_threads if "ort_threads" in chosen else share),
        "SIGHTQL_DECODE_THREADS": str(settings.decode_threads if "decode_threads" in chosen else share),
    }


class WorkerProcess(ProcessInterface):
    """One single-thread worker (under a Nanny, which restarts it if it dies) in its own process;
    started once it has joined the scheduler, or an error if its process ended first."""

    def __init__(self, scheduler: str, name: Any, env: dict[str, str], memory_limit: float) -> None:
        super().__init__(scheduler, name)
        self.scheduler, self.name = scheduler, name
        self.env, self.memory_limit = env, memory_limit
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        options = {"name": self.name, "nthreads": 1, "host": "127.0.0.1", "memory_limit": self.memory_limit,
                   "death_timeout": CONNECT_SECONDS, "silence_logs": 40}
        spec = json.dumps({"cls": "distributed.Nanny", "opts": options})
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "distributed.cli.dask_spec", self.scheduler, "--spec", spec,
            env={**QUIET, **os.environ, **self.env}, stdin=asyncio.subprocess.DEVNULL,
        )
        async with rpc(self.scheduler) as scheduler:
            while not await self._joined(scheduler):
                if self.process.returncode is not None:
                    raise DistributedError(
                        f"Dask worker process {self.name} exited with code {self.process.returncode} before it "
                        "joined the local cluster; its messages above say why"
                    )
                await asyncio.sleep(0.1)
        await super().start()

    async def _joined(self, scheduler: Any) -> bool:
        workers = (await scheduler.identity())["workers"].values()
        return any(worker["name"] == self.name for worker in workers)

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()  # the Nanny closes its worker, which also ends when the Nanny is gone
            try:
                await asyncio.wait_for(self.process.wait(), CLOSE_SECONDS)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        await super().close()


def local_cluster(workers: int) -> SpecCluster:
    """A cluster of ``workers`` single-thread worker processes sharing the cores and the memory."""
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "port": 0, "dashboard": False,
                                               "dashboard_address": None}}
    worker = {"cls": WorkerProcess, "options": {"env": worker_env(workers), "memory_limit": 1 / workers}}
    return SpecCluster(workers={i: worker for i in range(workers)}, scheduler=scheduler, worker=worker,
                       silence_logs=40, name="sightql")
