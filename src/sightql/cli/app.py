"""Command tree. Each command is a few lines over a library call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from sightql.cli import models as models_cmds
from sightql.cli import predict as predict_cmds
from sightql.cli import serve as serve_cmds
from sightql.cli import stage as stage_cmds
from sightql.cli import train as train_cmds
from sightql.cli import webapp as webapp_cmds
from sightql.cli.common import WarehouseOpt, open_session, print_table

app = typer.Typer(
    name="sightql",
    help="Image recognition inside a SQL warehouse.\n\nStart with: sightql demo",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
app.add_typer(stage_cmds.app, name="stage")
app.add_typer(models_cmds.app, name="models")
app.command("predict")(predict_cmds.predict)
app.add_typer(train_cmds.runs_app, name="runs")
app.command("train")(train_cmds.train_command)
app.command("app")(webapp_cmds.app_command)
app.command("serve")(serve_cmds.serve)


@app.command()
def init(path: Annotated[Optional[Path], typer.Argument(help="Warehouse folder to create.")] = None) -> None:
    """Create a warehouse (or open an existing one).

    **Examples**

        sightql init ./my-warehouse

        SIGHTQL_HOME=./my-warehouse sightql init
    """
    with open_session(path) as session:
        typer.echo(f"warehouse ready at {session.home}")


@app.command()
def load(
    table: Annotated[str, typer.Argument(help="Table to load into (created if missing).")],
    source: Annotated[str, typer.Argument(help="File, folder, glob or '@stage/prefix'.")],
    warehouse: WarehouseOpt = None,
) -> None:
    """Load images into a table: path, bytes, size, sha256, width, height, format.

    Non-images and over-limit files are listed and skipped; the rest load.

    **Examples**

        sightql load photos ./holiday-pictures/

        sightql load photos './scans/**/*.png'

        sightql load xray @xray/train
    """
    with open_session(warehouse) as session:
        typer.echo(str(session.load_images(table, source)))


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="The SQL to run.")],
    param: Annotated[Optional[List[str]], typer.Option("--param", "-p", help="A value for each ? in the query, in order.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
    warehouse: WarehouseOpt = None,
) -> None:
    """Run SQL on the warehouse; values go in with --param, never pasted into the query.

    **Examples**

        sightql sql "SELECT relative_path, classify('imagenet', image).label FROM photos"

        sightql sql "SELECT * FROM photos WHERE relative_path = ?" -p "cat's photo.jpg" -f json

        sightql sql "SELECT * FROM directory('@photos')" --format csv
    """
    from sightql.errors import ConfigError

    if fmt not in ("table", "csv", "json"):
        raise ConfigError(f"--format {fmt!r} is not known; use table, csv or json")
    with open_session(warehouse) as session:
        print_table(session.sql(query, param or None), fmt)


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
    from sightql.demo import run_demo

    run_demo(warehouse, echo=typer.echo)
