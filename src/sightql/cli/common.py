"""Options and output shared by the commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

WarehouseOpt = Annotated[
    Optional[Path],
    typer.Option("--warehouse", "-w", help="Warehouse folder (default: $SIGHTQL_HOME or ~/.sightql/warehouse)."),
]


def as_background_job() -> None:
    """A long job (predict, train, load, externalize) lowers its own CPU priority by ``job_nice`` steps
    (SIGHTQL_JOB_NICE, default 10) before it starts any thread, so the API, the app and people's queries
    on the same machine keep answering while it runs; alone on the machine it runs as fast (docs/batch.md)."""
    import os

    from sightql.config import cached_settings

    step = cached_settings().job_nice
    if step and hasattr(os, "nice"):
        try:
            os.nice(step)
        except OSError:  # not allowed here: the job runs at the shell's priority
            pass


def help_without_command(ctx: typer.Context) -> None:
    """A group called without a command (`sightql`, `sightql stage`) prints its help and exits 0."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


def open_session(warehouse: Path | None, **kwargs: Any):
    import sightql

    return sightql.connect(warehouse, **kwargs)


def read_text(path: Path, option: str, kind: str) -> str:
    """A UTF-8 text file given on the command line with ``option`` (e.g. '--file', 'a SQL script')."""
    from sightql.errors import ConfigError

    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {option} {path} ({exc.strerror}); give the path of {kind}") from None


def print_table(table: Any, fmt: str = "table") -> None:
    """Render an Arrow table as a rich table, CSV or JSON lines."""
    rows = table.to_pylist()
    if fmt == "json":
        for row in rows:
            typer.echo(json.dumps(row, default=_jsonable))
        return
    if fmt == "csv":
        import csv
        import sys

        writer = csv.writer(sys.stdout, lineterminator="\n")  # LF, as every other line the CLI prints
        writer.writerow(table.column_names)
        for row in rows:
            writer.writerow([_cell(v) for v in row.values()])
        return
    from rich.console import Console
    from rich.table import Table

    out = Table(*table.column_names, show_lines=False)
    for row in rows:
        out.add_row(*[_cell(v) for v in row.values()])
    Console().print(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return f"<{len(value):,} bytes>"
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"<{len(value):,} bytes>"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=_jsonable)
    return str(value)
