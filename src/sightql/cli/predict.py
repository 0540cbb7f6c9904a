"""``sightql predict``: a thin command over ``Session.predict``."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from sightql.cli.common import WarehouseOpt, as_background_job, open_session
from sightql.inference.runners import RunnerName, runner_from_options


def predict(
    model_ref: Annotated[Optional[str], typer.Argument(metavar="MODEL", help="Model reference, e.g. imagenet or clf@prod (or --model).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model reference, e.g. imagenet or xray@prod.")] = None,
    table: Annotated[Optional[str], typer.Option("--table", "-t", help="Source table (keyed by its primary key, --key, or its path column).")] = None,
    from_stage: Annotated[Optional[str], typer.Option("--from", help="Source stage prefix, e.g. '@photos/2024'.")] = None,
    image: Annotated[str, typer.Option("--image", help="The table's image column: BLOB, FILE values, or paths (VARCHAR) with --stage.")] = "image",
    stage: Annotated[Optional[str], typer.Option("--stage", help="The stage a path column's values are relative to, e.g. '@clothing'.")] = None,
    columns: Annotated[Optional[str], typer.Option("--columns", help="Write outputs into your columns: label=TYPE,score=CONFIDENCE,predicted_at=PRED_TIMESTAMP (outputs: label, score, top_k, model_version, predicted_at, error, sha256).")] = None,
    key: Annotated[Optional[str], typer.Option("--key", help="A unique column identifying rows, for a table without a primary key.")] = None,
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
    predicted_sha256, or with --columns your own columns (made if missing; model_version,
    prediction_error and predicted_sha256 are kept too unless mapped). Rows already predicted by
    the same model version from the same bytes (or file) are skipped; after an interruption, run
    the same command again to finish.

    **Examples**

        sightql predict xray@prod --table images

        sightql predict clf@prod --table clothing_test --image file_name --stage @clothing --columns label=TYPE,score=CONFIDENCE,predicted_at=PRED_TIMESTAMP

        sightql predict imagenet --table shots --image path --key shot_id --columns label=category,error=why

        sightql predict --model imagenet --from '@photos' --into photo_labels --runner dask

        sightql predict -m imagenet -t photos --where "relative_path LIKE ?" -p '2024/%' --top-k 3
    """
    from sightql.errors import ConfigError

    if (model_ref is None) == (model is None):
        raise ConfigError("give the model once: sightql predict MODEL --table NAME (or --model MODEL)")
    if (table is None) == (from_stage is None):
        raise ConfigError("give exactly one source: --table NAME or --from '@stage/prefix'")
    if from_stage is not None and not from_stage.startswith("@"):
        raise ConfigError(f"--from takes a stage reference such as '@photos', not {from_stage!r}; use --table for a table")
    chosen = runner_from_options(runner, scheduler, workers)  # a wrong mix is refused before the warehouse opens
    as_background_job()
    with open_session(warehouse) as session:
        report = session.predict(
            model_ref or model, table or from_stage, image=image, stage=stage, columns=columns, key=key, into=into, where=where, params=param or None, top_k=top_k,
            recompute=recompute, runner=chosen, batch_size=batch_size,
            device=device, progress=progress,
        )
        typer.echo(str(report))
