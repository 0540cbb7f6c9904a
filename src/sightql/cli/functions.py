"""``sightql functions create|ls|rm``: named SQL functions bound to a model reference."""

from __future__ import annotations

from typing import Annotated

import typer

from sightql.cli.common import WarehouseOpt, open_session

app = typer.Typer(help="Named SQL functions: defects(image) instead of classify('defects@prod', image).")


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="SQL name of the function, a plain identifier.")],
    ref: Annotated[str, typer.Argument(help="Model reference: imagenet, NAME, NAME@v3 or NAME@alias.")],
    replace: Annotated[bool, typer.Option("--replace", help="Point an existing function at REF instead.")] = False,
    warehouse: WarehouseOpt = None,
) -> None:
    """Make NAME a SQL function running the model REF, kept across reconnects.

    A classifier gives NAME(image) -> STRUCT(label, score, error) like classify; an embedding
    model gives FLOAT[] like embed; a text model makes NAME(text). REF is resolved on every
    query, so NAME@prod follows the alias.

    **Examples**

        sightql functions create defects defects@prod

        sightql sql "SELECT relative_path, defects(image).label FROM parts"

        sightql functions create defects defects@v4 --replace
    """
    with open_session(warehouse) as session:
        session.create_function(name, ref, replace=replace)
        typer.echo(f"function {name} -> {ref}")


@app.command("ls")
def ls(warehouse: WarehouseOpt = None) -> None:
    """List the named functions: name, model reference and task, one per line, tab-separated.

    **Example**

        sightql functions ls
    """
    with open_session(warehouse) as session:
        for function in session.functions():
            typer.echo(f"{function['name']}\t{function['model_ref']}\t{function['task']}")


@app.command("rm")
def rm(
    name: Annotated[str, typer.Argument(help="The function's name, from `sightql functions ls`.")],
    warehouse: WarehouseOpt = None,
) -> None:
    """Remove a named function (the model stays in the registry).

    **Example**

        sightql functions rm defects
    """
    with open_session(warehouse) as session:
        session.drop_function(name)
        typer.echo(f"removed function {name}")
