"""``sightql stage create|put|ls|get|rm``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sightql.cli.common import WarehouseOpt, open_session
from sightql.stages.paths import split_stage_ref

app = typer.Typer(help="Named file stores: a local folder in the warehouse, or an s3:// prefix.")


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Stage name.")],
    url: Annotated[Optional[str], typer.Option("--url", help="s3://bucket/prefix; omit for a local stage.")] = None,
    warehouse: WarehouseOpt = None,
) -> None:
    """Create a stage.

    **Examples**

        sightql stage create photos

        AWS_ENDPOINT_URL=http://127.0.0.1:9000 sightql stage create scans --url s3://bucket/scans
    """
    with open_session(warehouse) as session:
        stage = session.create_stage(name, url)
        typer.echo(f"stage @{stage.name} -> {stage.url}")


@app.command("put")
def put(
    target: Annotated[str, typer.Argument(help="'@stage' or '@stage/prefix'.")],
    source: Annotated[str, typer.Argument(help="File, folder or glob to upload.")],
    warehouse: WarehouseOpt = None,
) -> None:
    """Upload files, keeping their paths relative to the folder or glob root.

    **Examples**

        sightql stage put @photos ./holiday/

        sightql stage put @xray/train './chest_xray/train/**/*.jpeg'
    """
    name, prefix = split_stage_ref(target)
    with open_session(warehouse) as session:
        written = session.stage(name).put(source, prefix)
        typer.echo(f"put {len(written)} file(s) into @{name}")


@app.command("ls")
def ls(
    target: Annotated[Optional[str], typer.Argument(help="'@stage' or '@stage/prefix'; omit to list stages.")] = None,
    warehouse: WarehouseOpt = None,
) -> None:
    """List stages, or the files in one.

    **Examples**

        sightql stage ls

        sightql stage ls @photos/2024
    """
    with open_session(warehouse) as session:
        if target is None:
            for name, url in session.stages.list():
                typer.echo(f"@{name}\t{url}")
            return
        name, prefix = split_stage_ref(target)
        for f in session.stage(name).list(prefix):
            typer.echo(f"{f.relative_path}\t{f.size}\t{f.last_modified:%Y-%m-%d %H:%M:%S}")


@app.command("get")
def get(
    source: Annotated[str, typer.Argument(help="'@stage/path' of a file or folder.")],
    destination: Annotated[Path, typer.Argument(help="Local folder to write into.")] = Path("."),
    warehouse: WarehouseOpt = None,
) -> None:
    """Download a file or a folder from a stage.

    **Example**

        sightql stage get @photos/2024 ./downloaded
    """
    name, path = split_stage_ref(source)
    with open_session(warehouse) as session:
        files = session.stage(name).get(path, destination)
        typer.echo(f"got {len(files)} file(s) into {destination}")


@app.command("rm")
def rm(
    target: Annotated[str, typer.Argument(help="'@stage/path' of a file or folder.")],
    warehouse: WarehouseOpt = None,
) -> None:
    """Remove a file or everything under a folder prefix.

    **Example**

        sightql stage rm @photos/old
    """
    from sightql.errors import ConfigError
    name, path = split_stage_ref(target)
    if not path:
        raise ConfigError("give a path inside the stage, e.g. @photos/old; to drop a whole stage use the Python API")
    with open_session(warehouse) as session:
        removed = session.stage(name).remove(path)
        typer.echo(f"removed {len(removed)} file(s)")
