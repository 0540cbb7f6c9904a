"""Command tree. Each command is a few lines over a library call."""

from __future__ import annotations

from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Annotated, List, Literal, Optional

import typer

from sightql.cli import functions as functions_cmds
from sightql.cli import models as models_cmds
from sightql.cli import predict as predict_cmds
from sightql.cli import serve as serve_cmds
from sightql.cli import stage as stage_cmds
from sightql.cli import tables as tables_cmds
from sightql.cli import train as train_cmds
from sightql.cli import webapp as webapp_cmds
from sightql.cli.common import WarehouseOpt, as_background_job, help_without_command, open_session, print_table, read_text

app = typer.Typer(
    name="sightql",
    help="Image recognition inside a SQL warehouse.\n\nStart with: sightql demo",
    invoke_without_command=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
for group, name in ((stage_cmds.app, "stage"), (models_cmds.app, "models"), (train_cmds.runs_app, "runs"),
                    (functions_cmds.app, "functions"), (tables_cmds.app, "tables")):
    # A group named without a command prints its help and exits 0, as `sightql` alone does.
    app.add_typer(group, name=name, invoke_without_command=True, no_args_is_help=False, callback=help_without_command)
app.command("predict")(predict_cmds.predict)
app.command("train")(train_cmds.train_command)
app.command("app")(webapp_cmds.app_command)
app.command("serve")(serve_cmds.serve)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"sightql {installed_version('sightql')}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", help="Print the installed version and exit.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    help_without_command(ctx)


@app.command()
def init(
    path: Annotated[Optional[Path], typer.Argument(help="Warehouse folder to create.")] = None,
    storage: Annotated[
        Optional[str],
        typer.Option("--storage", help="s3://bucket/prefix to keep loaded images in (default: the warehouse folder)."),
    ] = None,
) -> None:
    """Create a warehouse (or open an existing one).

    Loaded images are kept in the warehouse's own stage: its folder, or with --storage an S3
    prefix (credentials and endpoint from each process's environment; set once, before the first load).

    **Examples**

        sightql init ./my-warehouse

        SIGHTQL_HOME=./my-warehouse sightql init

        AWS_ENDPOINT_URL=http://127.0.0.1:9000 sightql init ./team --storage s3://images/team
    """
    with open_session(path) as session:
        if storage:
            stage = session.set_storage(storage)
            typer.echo(f"loaded images go to {stage.url}")
        typer.echo(f"warehouse ready at {session.home}")


@app.command()
def load(
    table: Annotated[str, typer.Argument(help="Table to load into (created if missing).")],
    source: Annotated[str, typer.Argument(help="File, folder, glob or '@stage/prefix'.")],
    inline: Annotated[
        bool, typer.Option("--inline", help="Keep the bytes in the table (BLOB) instead of the warehouse's stage.")
    ] = False,
    warehouse: WarehouseOpt = None,
) -> None:
    """Load images into a table: path, image, size, sha256, width, height, format.

    Each file is copied into the warehouse's own stage (identical bytes once) and the image
    column holds FILE values naming the copies; --inline keeps small images' bytes in the table
    instead. Non-images and over-limit files are listed and skipped; the rest load.

    **Examples**

        sightql load photos ./holiday-pictures/

        sightql load photos './scans/**/*.png'

        sightql load xray @xray/train

        sightql load icons ./icons/ --inline
    """
    as_background_job()
    with open_session(warehouse) as session:
        typer.echo(str(session.load_images(table, source, inline=inline)))


@app.command()
def sql(
    query: Annotated[Optional[str], typer.Argument(help="The SQL to run (or give --file).")] = None,
    file: Annotated[
        Optional[Path],
        typer.Option("--file", exists=True, dir_okay=False, help="A file of statements separated by ';'; prints the last query's result."),
    ] = None,
    param: Annotated[Optional[List[str]], typer.Option("--param", "-p", help="A value for each ? in the query, in order.")] = None,
    fmt: Annotated[Literal["table", "csv", "json"], typer.Option("--format", "-f", help="How to print the rows.")] = "table",
    warehouse: WarehouseOpt = None,
) -> None:
    """Run SQL on the warehouse; values go in with --param, never pasted into the query.

    With --file, every statement in the file runs in order and the result of the last query
    (SELECT, FROM, VALUES, SHOW, DESCRIBE, ...) is printed; --param needs a file of one statement.

    **Examples**

        sightql sql "SELECT relative_path, classify('imagenet', image).label FROM photos"

        sightql sql "SELECT * FROM photos WHERE relative_path = ?" -p "cat's photo.jpg" -f json

        sightql sql "SELECT * FROM directory('@photos')" --format csv

        sightql sql --file nightly.sql
    """
    from sightql.errors import ConfigError

    if (query is None) == (file is None):
        raise ConfigError("give the SQL either as QUERY or as --file PATH, e.g. sightql sql \"SELECT 42\"")
    with open_session(warehouse) as session:
        if file is None:
            result = session.sql(query, param or None)
        else:
            result = session.sql_script(read_text(file, "--file", "a SQL script"), param or None)
        print_table(result, fmt)


@app.command()
def classify(
    images: Annotated[List[str], typer.Argument(help="Image files, or '@stage/path' references.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model reference.")] = "imagenet",
    top: Annotated[int, typer.Option("--top", "-k", help="How many labels per image.")] = 3,
    warehouse: WarehouseOpt = None,
) -> None:
    """Classify image files or staged files and print the top labels.

    **Examples**

        sightql classify cat.jpg dog.png

        sightql classify @photos/chelsea.png --top 5
    """
    from sightql.errors import ConfigError

    if top < 1:
        raise ConfigError("--top must be at least 1")
    with open_session(warehouse) as session:
        blobs = [_read_image_arg(session, ref) for ref in images]
        for ref, result in zip(images, session.classify(blobs, model=model, k=top)):
            if result["error"]:
                typer.echo(f"{ref}: ERROR {result['error']}")
                continue
            labels = ", ".join(f"{item['label']} {item['score']:.3f}" for item in result["top"])
            typer.echo(f"{ref}: {labels}")


def _read_image_arg(session, ref: str) -> bytes:
    from sightql.errors import ConfigError
    from sightql.stages.paths import split_stage_ref

    if ref.startswith("@"):
        name, path = split_stage_ref(ref)
        return session.stage(name).read_bytes(path)
    path = Path(ref)
    if not path.is_file():
        raise ConfigError(f"{ref} is not a file; give an image file or an '@stage/path'")
    return path.read_bytes()


@app.command()
def demo(
    warehouse: Annotated[Path, typer.Option("--warehouse", "-w", help="Demo warehouse folder.")] = Path("demo-warehouse"),
) -> None:
    """Load the sample photos shipped with scikit-image and scikit-learn, then classify them in SQL.

    **Example**

        sightql demo --warehouse ./demo-warehouse
    """
    from sightql.cli.demo import run_demo

    run_demo(warehouse, echo=typer.echo)
