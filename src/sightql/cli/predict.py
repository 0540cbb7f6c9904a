"""``sightql predict``: a thin command over ``Session.predict``."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from sightql.cli.common import WarehouseOpt, as_background_job, open_session
from sightql.inference.runners import RunnerName, runner_from_options


def predict(
    model: Annotated[str, typer.Option("--model", "-m", help="Model reference, e.g. imagenet or xray@prod.")],
    table: Annotated[Optional[str], typer.Option("--table", "-t", help="Source table (keyed by its primary key).")] = None,
    from_stage: Annotated[Optional[str], typer.Option("--from", help="Source stage prefix, e.g. '@photos/2024'.")] = None,
    image: Annotated[str, typer.Option("--image", help="The BLOB column holding the images (tables).")] = "image",
    into: Annotated[Optional[str], typer.Option("--into", help="Table for the predictions (default: the source table).")] = None,
    where: Annotated[Optional[str], typer.Option("--where", help="SQL filter on the source; values go in with --param.")] = None,
    param: Annotated[Optional[List[str]], typer.Option("--param", "-p", help="A value for each ? in --where, in order.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Also store the top k labels (0: none).")] = 0,
    recompute: Annotated[bool, typer.Option("--recompute", help="Predict every row again, even unchanged ones.")] = False,
    runner: Annotated[RunnerName, typer.Option("--runner", help="Where the model runs: this process, or a Dask cluster.")] = "local",
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler address (default: SIGHTQL_DASK_SCHEDULER, else a local cluster).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Local Dask cluster size (default: SIGHTQL_DASK_WORKERS, else CPU count).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Images per model call.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu or cuda.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")] = True,
    warehouse: WarehouseOpt = None,
) -> None:
    """Classify a whole table or stage and write the predictions back (resumable, incremental).

    Writes predicted_label, confidence, top_k, model_version, predicted_at, prediction_error and
    predicted_sha256. Rows already predicted by the same model version from the same bytes are skipped;
    after an interruption, run the same command again to finish.

    **Examples**

        sightql predict --model xray@prod --table images --image image --into images

        sightql predict --model imagenet --from '@photos' --into photo_labels --runner dask

        sightql predict -m imagenet -t photos --where "relative_path LIKE ?" -p '2024/%' --top-k 3
    """
    from sightql.errors import ConfigError

    if (table is None) == (from_stage is None):
        raise ConfigError("give exactly one source: --table NAME or --from '@stage/prefix'")
    if from_stage is not None and not from_stage.startswith("@"):
        raise ConfigError(f"--from takes a stage reference such as '@photos', not {from_stage!r}; use --table for a table")
    chosen = runner_from_options(runner, scheduler, workers)  # a wrong mix is refused before the warehouse opens
    as_background_job()
    with open_session(warehouse) as session:
        report = session.predict(
            model, table or from_stage, image=image, into=into, where=where, params=param or None, top_k=top_k,
            recompute=recompute, runner=chosen, batch_size=batch_size,
            device=device, progress=progress,
        )
        typer.echo(str(report))
