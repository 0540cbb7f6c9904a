"""Runners: the same plan executed in this process (``local``) or on a Dask cluster (``dask``).

A runner turns a :class:`~sightql.inference.plan.PredictPlan` into a stream of result tables,
one per chunk of rows; the driver writes each one in its own transaction.
"""

from __future__ import annotations

from typing import Literal

RunnerName = Literal["local", "dask"]
RUNNERS: tuple[str, ...] = ("local", "dask")
