"""``sightql app``: serve the Streamlit web app on a warehouse."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from sightql.cli.common import WarehouseOpt


def app_command(
    warehouse: WarehouseOpt = None,
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port to serve on.")] = 8501,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 for every interface.")] = "127.0.0.1",
) -> None:
    """Serve the web app (recognize, generate, stage explorer, models, training, SQL) in the browser.

    Pages open the warehouse only while they run, so CLI jobs can use it between clicks.
    Stop with Ctrl+C. Image generation needs OPENAI_API_KEY or SIGHTQL_IMAGE_API_BASE (see docs/app.md).

    **Examples**

        sightql app --warehouse ./demo-warehouse

        sightql app -w ./demo-warehouse --port 8502 --host 0.0.0.0
    """
    from sightql.app.launch import app_environment, streamlit_command
    from sightql.config import Settings, default_home

    home = warehouse if warehouse is not None else default_home()
    max_upload_mb = max(1, math.ceil(Settings.from_env().max_image_bytes / 2**20))
    command = streamlit_command(host, port, max_upload_mb)
    typer.echo(f"serving warehouse {home} at http://{host}:{port}", nl=True)
    sys.stdout.flush()
    # Streamlit takes this process's place, so Ctrl+C and SIGTERM reach the server directly.
    os.execve(command[0], command, app_environment(Path(home)))
