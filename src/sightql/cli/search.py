"""``sightql search`` and ``sightql index create|refresh|ls|rm``: image search over a table's embedding index."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from sightql.cli.common import WarehouseOpt, as_background_job, help_without_command, open_session

index_app = typer.Typer(help="Embedding indexes for image search: sightql index create photos.")


def search(
    table: Annotated[str, typer.Argument(help="The indexed table.")],
    query: Annotated[str, typer.Argument(help="A local image file, '@stage/path', or a text (zero-shot index only).")],
    k: Annotated[int, typer.Option("-k", "--k", help="How many nearest rows to print.")] = 10,
    approximate: Annotated[Optional[bool], typer.Option(
        "--approximate/--exact", help="Force the approximate or the exact search (default: by the index's size).",
        show_default=False)] = None,
    warehouse: WarehouseOpt = None,
) -> None:
    """Print the K rows of TABLE whose images are nearest QUERY: rank, key and cosine distance, tab-separated.

    TABLE needs an index (sightql index create TABLE); rows added since its last refresh are not found.

    **Examples**

        sightql index create photos

        sightql search photos ~/Pictures/cat.jpg -k 5

        sightql search photos @uploads/query.png --exact
    """
    with open_session(warehouse) as session:
        found = session.similar_images(table, query, k, approximate=approximate)
        for row in found.to_pylist():
            typer.echo(f"{row['rank']}\t{row['key']}\t{row['distance']:.6f}")


@index_app.command("create")
def create(
    table: Annotated[str, typer.Argument(help="The table whose images to index.")],
    image: Annotated[str, typer.Option("--image", help="The column of images: BLOB, FILE values or '@stage/path'.")] = "image",
    model: Annotated[str, typer.Option("--model", help="imagenet (bundled) or a registry model giving vectors.")] = "imagenet",
    warehouse: WarehouseOpt = None,
) -> None:
    """Index TABLE's images with MODEL and embed every row (again: only what changed).

    **Examples**

        sightql index create photos

        sightql index create parts --image file --model clip@prod
    """
    as_background_job()
    with open_session(warehouse) as session:
        typer.echo(str(session.create_index(table, image=image, model=model)))


@index_app.command("refresh")
def refresh(
    table: Annotated[str, typer.Argument(help="The indexed table.")],
    warehouse: WarehouseOpt = None,
) -> None:
    """Embed the rows added or changed since the last refresh and drop deleted ones; safe to rerun after a crash.

    **Example**

        sightql index refresh photos
    """
    as_background_job()
    with open_session(warehouse) as session:
        typer.echo(str(session.refresh_index(table)))


@index_app.command("ls")
def ls(warehouse: WarehouseOpt = None) -> None:
    """List the indexes: table, image column, model version, dimension, last refresh (tab-separated).

    **Example**

        sightql index ls
    """
    with open_session(warehouse) as session:
        for index in session.indexes():
            typer.echo(f"{index['table']}\t{index['image']}\t{index['model_version']}\t{index['dimension']}\t"
                       f"{index['refreshed_at']}")


@index_app.command("rm")
def rm(
    table: Annotated[str, typer.Argument(help="The indexed table (the table itself stays).")],
    warehouse: WarehouseOpt = None,
) -> None:
    """Remove TABLE's index.

    **Example**

        sightql index rm photos
    """
    with open_session(warehouse) as session:
        session.drop_index(table)
        typer.echo(f"index of {table} removed")


def register(app: typer.Typer) -> None:
    """Add ``search`` and the ``index`` group to the command tree."""
    app.command("search")(search)
    app.add_typer(index_app, name="index", invoke_without_command=True, no_args_is_help=False,
                  callback=help_without_command)
