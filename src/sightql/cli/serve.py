"""``sightql serve``: a thin command over ``sightql.api.serve``."""

from __future__ import annotations

from typing import Annotated

import typer

from sightql.cli.common import WarehouseOpt


def serve(
    warehouse: WarehouseOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; any but a loopback address needs $SIGHTQL_API_TOKEN.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level: warning, info, debug.")] = "info",
) -> None:
    """Serve the HTTP API (POST /v1/models/{ref}/predict, GET /v1/models, /healthz, /docs).

    Every /v1 request needs 'Authorization: Bearer $SIGHTQL_API_TOKEN'. Without a token the
    server runs only on a loopback address, open, with a warning. Each request opens the
    warehouse and closes it after, so `sightql predict` jobs can share it. See docs/api.md.

    **Examples**

        SIGHTQL_API_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))') sightql serve -w ./wh --host 0.0.0.0

        sightql serve --warehouse ./wh --port 8000

        curl -H "Authorization: Bearer $SIGHTQL_API_TOKEN" -F file=@cat.jpg 'http://127.0.0.1:8000/v1/models/imagenet/predict?k=3'
    """
    from sightql.api import serve as run

    run(warehouse, host=host, port=port, log_level=log_level)
