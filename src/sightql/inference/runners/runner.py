"""The runner protocol: a :class:`~sightql.inference.plan.PredictPlan` in, one result table per chunk out.

As Daft's ``runners/runner.py``: the driver plans and writes; a runner only decides where the
model runs. Each runner carries its own options (the Dask runner its scheduler and worker count),
so ``predict()`` takes a runner, not the options of every runner.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, Protocol, runtime_checkable

import pyarrow as pa

from sightql.inference.plan import PredictPlan

RunnerName = Literal["local", "dask"]
RUNNERS: tuple[str, ...] = ("local", "dask")


@runtime_checkable
class Runner(Protocol):
    """Runs a plan: result tables (see :func:`~sightql.inference.pipeline.result_schema`), one per chunk,
    in any order; the driver writes each in its own transaction. Closing the iterator stops the run."""

    name: str  # what the report says ran the plan

    def run(self, plan: PredictPlan) -> Iterator[pa.Table]: ...
