"""The Dask runner: workers get key ranges and read the images themselves; the driver writes.

* Tables: a DuckDB file has one writer, so workers cannot open the warehouse. The driver
  exports each key range's due rows to a Parquet file in a temporary folder (a bounded
  number ahead of the workers); a worker reads its file. Image bytes never pass through the
  scheduler, only file names in and small result tables out.
* Tables of FILE values: a worker gets the range's FILE values (read by the driver, no bytes)
  and each stage's URL, and reads the files itself (:mod:`sightql.inference.file_rows`).
* Tables of stage paths: likewise, with the range's paths and the stages they point into; the
  worker stats each file, skips the unchanged ones and reads the rest (:mod:`sightql.inference.path_rows`).
* Stages: a worker gets the stage URL and a list of relative paths and reads the files.
* The model travels as a :class:`~sightql.registry.specs.ModelSpec`; each worker process
  loads it once (module-level cache) and re-hashes the registry artifact first. A cluster at a
  scheduler address may be on other machines, so the driver also ships the model's files to
  each worker once (:mod:`sightql.inference.runners.dask_model`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from sightql.config import Settings, decode_threads
from sightql.errors import ConfigError, DistributedError, MissingDependencyError
from sightql.inference.file_rows import StageAddress, read_file_rows, stage_addresses, stage_lookup
from sightql.inference.path_rows import PathBase, read_path_rows
from sightql.inference.pipeline import Chunk, PredictOptions, predict_chunk, result_schema
from sightql.inference.plan import (
    PredictPlan, read_file_run, read_path_run, read_stage_chunk, stage_path_chunks, table_run_chunk, table_runs,
)
from sightql.inference.source import StageSource, TableSource
from sightql.registry.specs import ModelSpec, load_model
from sightql.stages.files import FileRef


@dataclass(frozen=True)
class TableRangeTask:
    parquet_path: str
    key_type: str


@dataclass(frozen=True)
class StageRangeTask:
    stage_name: str
    url: str
    paths: tuple[str, ...]
    known: dict[str, str]
    endpoint_url: str | None = None


@dataclass(frozen=True)
class FileRangeTask:
    """A range of a FILE table: keys, FILE values, current predictions' identities, and the stages they name."""

    keys: pa.Array
    refs: tuple[FileRef | None, ...]
    known: tuple[str | None, ...] | None
    stages: dict[str, StageAddress | str]  # name -> address, or why the driver could not open it


@dataclass(frozen=True)
class PathRangeTask:
    """A range of a table of stage paths: keys, paths, current predictions' identities, where the paths
    point, and the stages they name."""

    keys: pa.Array
    paths: tuple[str | None, ...]
    known: tuple[str | None, ...] | None
    base: PathBase
    stages: dict[str, StageAddress | str]


RangeTask = TableRangeTask | StageRangeTask | FileRangeTask | PathRangeTask


def run_range(spec: ModelSpec, options: PredictOptions, task: RangeTask) -> tuple[pa.Table, int]:
    """On a worker: read one range's images, predict them; returns (results, rows skipped as unchanged)."""
    import pyarrow.parquet as pq

    from sightql.inference.runners.dask_model import worker_spec  # imports distributed: on workers only

    predictor = load_model(worker_spec(spec))  # its ONNX Runtime threads: this worker's SIGHTQL_ORT_THREADS
    if options.decode_threads is None:
        options = replace(options, decode_threads=decode_threads())
    if isinstance(task, TableRangeTask):
        if not os.path.exists(task.parquet_path):
            raise DistributedError(
                f"this worker cannot see {task.parquet_path}, which the driver wrote for it: a BLOB table's ranges "
                "go to workers as files in the driver's temporary folder, so they need workers on the driver's "
                "machine; for workers on other machines, keep the images in an s3:// stage and predict over a table "
                "of FILE values (to_file) or over the stage itself"
            )
        rows = pq.read_table(task.parquet_path)
        chunk = Chunk(rows.column("key").combine_chunks(), rows.column("image").combine_chunks())
        skipped = 0
    elif isinstance(task, FileRangeTask):
        chunk, skipped = read_file_rows(task.keys, task.refs, task.known, stage_lookup(task.stages))
    elif isinstance(task, PathRangeTask):
        chunk, skipped = read_path_rows(task.keys, task.paths, task.known, task.base, stage_lookup(task.stages))
    else:
        chunk, skipped = read_stage_chunk(task.stage_name, task.url, list(task.paths), task.known, task.endpoint_url)
    if len(chunk) == 0:
        return pa.Table.from_batches([], result_schema(chunk.keys.type)), skipped
    return predict_chunk(predictor, chunk, options), skipped


@dataclass(frozen=True)
class DaskRunner:
    """A Dask cluster: the one at ``scheduler`` ('tcp://host:8786'), or a local cluster of ``workers``
    single-thread worker processes (default: the CPU count). Left both None, the warehouse's settings
    ``dask_scheduler`` and ``dask_workers`` (SIGHTQL_DASK_SCHEDULER, SIGHTQL_DASK_WORKERS) choose."""

    scheduler: str | None = None
    workers: int | None = None
    name: ClassVar[str] = "dask"

    def __post_init__(self) -> None:
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if self.scheduler is not None and self.workers is not None:
            raise ConfigError("workers= applies to the local cluster only; size a remote cluster where it is started")

    def configured(self, settings: Settings) -> "DaskRunner":
        """This runner, or, when it names neither a scheduler nor a worker count, the settings' cluster."""
        if self.scheduler is not None or self.workers is not None:
            return self
        if settings.dask_scheduler is not None and settings.dask_workers is not None:
            raise ConfigError("dask_workers applies to a local cluster only, and dask_scheduler is set too; "
                              "unset one of them (SIGHTQL_DASK_WORKERS or SIGHTQL_DASK_SCHEDULER, or the config file's keys)")
        return DaskRunner(settings.dask_scheduler, settings.dask_workers)

    def run(self, plan: PredictPlan) -> Iterator[pa.Table]:
        """Result tables as ranges finish (in any order); at most two ranges per worker are exported at once."""
        from dask.distributed import as_completed

        client, cluster = self._client()
        scratch = Path(tempfile.mkdtemp(prefix="sightql-predict-"))
        options = replace(plan.options, decode_threads=None)  # each worker decodes with its own share of the cores
        try:
            n_workers = max(1, len(client.scheduler_info().get("workers", {})) or (self.workers or 1))
            if cluster is None:  # workers elsewhere cannot read the model from this warehouse folder
                from sightql.inference.runners.dask_model import ship_model

                ship_model(client, plan.spec)
            tasks = _tasks(plan, scratch)
            spec = client.scatter(plan.spec, broadcast=True, hash=False)
            submitted: dict[Any, RangeTask] = {}

            def submit_next() -> Any:
                task = next(tasks, None)
                if task is None:
                    return None
                future = client.submit(run_range, spec, options, task, pure=False)
                submitted[future] = task
                return future

            first = [f for f in (submit_next() for _ in range(2 * n_workers)) if f is not None]
            if not first:
                return
            running = as_completed(first, loop=client.loop)
            for future in running:
                results, skipped = future.result()
                task = submitted.pop(future)
                if isinstance(task, TableRangeTask):
                    os.unlink(task.parquet_path)
                future.release()
                following = submit_next()
                if following is not None:
                    running.add(following)
                if skipped:
                    plan.on_skipped(skipped)
                yield results
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
            shutil.rmtree(scratch, ignore_errors=True)

    def _client(self) -> tuple[Any, Any]:
        try:
            from dask.distributed import Client
        except ImportError:
            raise MissingDependencyError("dask[distributed]", "dask") from None
        if self.scheduler is not None:
            return Client(self.scheduler, set_as_default=False), None
        from sightql.inference.runners.dask_cluster import local_cluster  # imports distributed

        cluster = local_cluster(self.workers or max(1, os.cpu_count() or 1))
        return Client(cluster, set_as_default=False), cluster


def _tasks(plan: PredictPlan, scratch: Path) -> Iterator[RangeTask]:
    import pyarrow.parquet as pq

    if isinstance(plan.source, TableSource) and plan.source.paths is not None:
        assert plan.stages is not None, "a path table's plan needs the stage catalog"
        base = plan.source.paths
        for run in table_runs(plan):
            rows = read_path_run(plan, run)
            if rows is not None:
                keys, paths, known = rows
                yield PathRangeTask(keys, tuple(paths), None if known is None else tuple(known), base,
                                    stage_addresses(plan.stages, base.stage_names(paths)))
    elif isinstance(plan.source, TableSource) and plan.source.is_file:
        assert plan.stages is not None, "a FILE table's plan needs the stage catalog"
        for run in table_runs(plan):
            found = read_file_run(plan, run)
            if found is not None:
                keys, refs, known = found
                yield FileRangeTask(keys, tuple(refs), None if known is None else tuple(known),
                                    stage_addresses(plan.stages, (ref.stage_name for ref in refs if ref is not None)))
    elif isinstance(plan.source, TableSource):
        for index, run in enumerate(table_runs(plan)):
            chunk = table_run_chunk(plan, run)
            if chunk is None:
                continue
            path = scratch / f"range-{index:06d}.parquet"
            pq.write_table(pa.table({"key": chunk.keys, "image": chunk.images}), path)
            yield TableRangeTask(str(path), plan.source.key_type)
    else:
        assert isinstance(plan.source, StageSource)
        for paths in stage_path_chunks(plan):
            known = {p: plan.stage_known[p] for p in paths if p in plan.stage_known}
            yield StageRangeTask(plan.source.name, plan.source.url, tuple(paths), known, plan.source.endpoint_url)
