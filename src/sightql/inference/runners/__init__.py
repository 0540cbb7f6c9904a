"""Runners: the same plan executed in this process (``local``) or on a Dask cluster (``dask``).

A runner (:class:`Runner`: ``run(plan) -> Iterator[pa.Table]``) turns a
:class:`~sightql.inference.plan.PredictPlan` into a stream of result tables, one per chunk of rows;
the driver writes each one in its own transaction. ``predict(runner=...)`` takes ``'local'``,
``'dask'`` (the cluster the settings name) or a runner, e.g. ``DaskRunner(scheduler='tcp://host:8786')``
or ``DaskRunner(workers=4)``. Importing this loads no Dask: the Dask runner imports it when it runs.
"""

from __future__ import annotations

from sightql.config import Settings
from sightql.errors import ConfigError
from sightql.inference.runners.dask import DaskRunner
from sightql.inference.runners.local import LocalRunner
from sightql.inference.runners.runner import RUNNERS, Runner, RunnerName

__all__ = ["DaskRunner", "LocalRunner", "RUNNERS", "Runner", "RunnerName", "resolve_runner", "runner_from_options"]


def resolve_runner(runner: RunnerName | Runner, settings: Settings) -> Runner:
    """The runner ``runner`` names (or is); a Dask runner without options gets the settings' cluster."""
    if runner == "local":
        return LocalRunner()
    if runner == "dask":
        runner = DaskRunner()
    if isinstance(runner, DaskRunner):
        return runner.configured(settings)
    if isinstance(runner, Runner) and not isinstance(runner, str):
        return runner
    raise ConfigError(f"runner {runner!r} is not known; use 'local' or 'dask', or a runner such as DaskRunner(workers=4)")


def runner_from_options(runner: RunnerName, scheduler: str | None = None, workers: int | None = None) -> Runner:
    """A runner from separate options (the CLI's --runner, --scheduler and --workers); a wrong mix is one sentence."""
    if runner not in RUNNERS:
        raise ConfigError(f"runner {runner!r} is not known; use 'local' or 'dask'")
    if runner == "dask":
        return DaskRunner(scheduler, workers)
    if scheduler is not None:
        raise ConfigError("scheduler= needs runner='dask'; pass both, e.g. runner='dask', scheduler='tcp://host:8786'")
    if workers is not None:
        raise ConfigError("workers= applies to runner='dask'; the local runner uses SIGHTQL_DECODE_THREADS")
    return LocalRunner()
