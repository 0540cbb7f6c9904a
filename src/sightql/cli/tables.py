"""``sightql tables externalize``."""

from __future__ import annotations

from typing import Annotated

import typer

from sightql.cli.common import WarehouseOpt, as_background_job, open_session

app = typer.Typer(help="Image tables: how they keep their images.")


@app.command("externalize")
def externalize(
    table: Annotated[str, typer.Argument(help="A table whose image column holds bytes (BLOB).")],
    warehouse: WarehouseOpt = None,
) -> None:
    """Move a table's image bytes into the warehouse's stage; its image column then holds FILE values.

    Rows, other columns, predictions and the key are kept. Safe to interrupt: run it again to finish.

    **Examples**

        sightql tables externalize photos
    """
    as_background_job()
    with open_session(warehouse) as session:
        typer.echo(str(session.externalize_table(table)))
